"""The baseline of ``benchmarks/vs_plain.py``: federated LoRA SFT in a plain torch + peft
script, with nothing of fedllm, doing the same optimizer steps on the same batches as
``fedllm run`` with the same config (reference client sampling, per-round seeded draws,
alpaca prompts with loss on the response, AdamW, cosine lr, sample-weighted FedAvg).

    python benchmarks/plain_sft.py MODEL_DIR DATA_JSON OUT_DIR ROUNDS K STEPS BATCH LR MAXLEN

Prints ``loop_s=<seconds of the training rounds>`` last.
"""

from __future__ import annotations

import json
import math
import random
import sys
import time

import torch
from peft import LoraConfig, get_peft_model, set_peft_model_state_dict
from transformers import AutoModelForCausalLM, AutoTokenizer

ALPACA = ("Below is an instruction that describes a task. Write a response that appropriately "
          "completes the request.\n\n### Instruction:\n{instruction}\n\n### Response:\n")


def client_seed(run_seed: int, rnd: int, cid: str) -> int:
    return random.Random(f"{run_seed}:{rnd}:{cid}").getrandbits(31)


def main() -> None:
    model_dir, data_path, out_dir = sys.argv[1:4]
    rounds, k, steps, batch = (int(x) for x in sys.argv[4:8])
    lr, max_len = float(sys.argv[8]), int(sys.argv[9])
    torch.set_num_threads(1)
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    for p in model.parameters():
        p.requires_grad_(False)
    torch.manual_seed(0)
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0,
                                             target_modules=["q_proj", "v_proj"],
                                             task_type="CAUSAL_LM"))
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    data = json.load(open(data_path))
    clients = list(data)
    encoded = {}
    for cid, samples in data.items():
        rows = []
        for s in samples:
            p = tok(ALPACA.format(instruction=s["instruction"]))["input_ids"]
            r = tok(s["response"], add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
            ids = (p + r)[:max_len]
            rows.append((ids, ([-100] * len(p) + r)[:max_len]))
        encoded[cid] = rows
    glob = {n: p.detach().clone() for n, p in trainable.items()}
    t0 = time.perf_counter()
    for rnd in range(rounds):
        lr_t = 1e-6 + 0.5 * (lr - 1e-6) * (1 + math.cos(math.pi * rnd / rounds))
        rng = random.Random(rnd)
        picked = [clients[i] for i in sorted(rng.sample(range(len(clients)), k))]
        acc = {n: torch.zeros_like(v) for n, v in glob.items()}
        total = 0
        for cid in picked:
            rows = encoded[cid]
            seed = client_seed(0, rnd, cid)
            draw = random.Random(seed).sample(range(len(rows)), min(len(rows), steps * batch))
            with torch.no_grad():
                for n, p in trainable.items():
                    p.copy_(glob[n])
            torch.manual_seed(seed)
            opt = torch.optim.AdamW(trainable.values(), lr=lr_t, weight_decay=0.0)
            model.train()
            order = random.Random(seed + 1)
            pool: list[int] = []
            for _ in range(steps):
                idx: list[int] = []
                while len(idx) < batch:
                    if not pool:
                        pool = list(range(len(draw)))
                        order.shuffle(pool)
                    idx.append(pool.pop())
                chunk = [rows[draw[i]] for i in idx]
                longest = max(len(ids) for ids, _ in chunk)
                ids = torch.tensor([a + [tok.pad_token_id] * (longest - len(a)) for a, _ in chunk])
                lab = torch.tensor([b + [-100] * (longest - len(b)) for _, b in chunk])
                mask = torch.tensor([[1] * len(a) + [0] * (longest - len(a)) for a, _ in chunk])
                loss = model(input_ids=ids, attention_mask=mask, labels=lab).loss
                loss.backward()
                opt.step()
                opt.zero_grad(set_to_none=True)
            n_k = len(rows)
            with torch.no_grad():
                for n, p in trainable.items():
                    acc[n] += p.detach() * n_k
            total += n_k
        glob = {n: v / total for n, v in acc.items()}
    loop = time.perf_counter() - t0
    set_peft_model_state_dict(model, {n.replace(".default", ""): v for n, v in glob.items()})
    model.save_pretrained(out_dir)
    print(f"loop_s={loop:.3f}")


if __name__ == "__main__":
    main()
