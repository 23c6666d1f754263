"""Training throughput and memory on a GPU: a random-initialised Llama of about 1B parameters
(TinyLlama-1.1B's shape, nothing downloaded) in bf16, LoRA r16 on every linear layer, sequence
1024. For LoRA SFT and DPO, with and without gradient checkpointing and 4-bit (QLoRA): tokens/s,
MFU, peak GPU memory; and fedllm's client update against a plain loop doing the same steps on
the same batches in the same process (the engine/plain ratio).

    python benchmarks/gpu.py                 # on a CUDA GPU (about 5 minutes on an H100)
    python benchmarks/gpu.py --smoke         # tiny shapes on the CPU: checks the script runs

MFU = model FLOPs per second / the GPU's peak dense bf16 FLOP/s. Model FLOPs of LoRA training
with a frozen base per token: forward 2N + backward through the activations 2N (no weight
gradients of the frozen base) + attention 4·L·s·d·(1 + 1) for forward + backward; activation
recomputation under checkpointing is not model work and is not counted. 6N-per-token MFU (the
full fine-tuning convention) is printed too. DPO at the paper's pairing: SFT batch 16 vs DPO
batch 8 pairs (16 sequences), so peak memory is comparable (target DPO <= 1.1 x SFT).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

#: dense bf16 peak FLOP/s by device name fragment (vendor data sheets, SXM parts)
PEAKS = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40": 181e12, "A10": 125e12,
         "4090": 165e12, "3090": 71e12}
ONE_B = dict(hidden_size=2048, intermediate_size=5632, num_hidden_layers=22,
             num_attention_heads=32, num_key_value_heads=4, max_position_embeddings=2048,
             vocab_size=32000)
SMOKE = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=1024, vocab_size=260)


def peak_flops(device) -> float | None:
    import torch

    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAKS.items() if k in name), None)


def model_flops_per_token(cfg: dict, seq: int) -> tuple[float, float]:
    """(LoRA frozen-base model FLOPs per token, 6N per token), N = non-embedding params."""
    d, f, layers = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]
    kv = d * cfg["num_key_value_heads"] // cfg["num_attention_heads"]
    per_layer = d * d * 2 + d * kv * 2 + 3 * d * f  # q, o; k, v; gate, up, down
    n = layers * per_layer + d * cfg["vocab_size"]  # + the LM head
    attn = 4 * layers * seq * d  # QK^T and AV, forward, per token (causal: half, x2 for fwd)
    return 4 * n + 2 * attn, 6 * n


def write_model(path: Path, shape: dict) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from fedllm.tiny import build_tokenizer

    cfg = LlamaConfig(bos_token_id=1, eos_token_id=2, pad_token_id=3, tie_word_embeddings=False,
                      **shape)
    torch.manual_seed(0)
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        model = LlamaForCausalLM(cfg).to(torch.bfloat16)
    model.save_pretrained(path)
    tok = build_tokenizer()
    tok.model_max_length = shape["max_position_embeddings"]
    tok.save_pretrained(path)
    return path


def write_data(path: Path, seq: int, clients: int, per_client: int, pairs: bool) -> Path:
    import random

    rng = random.Random(0)
    words = "federated learning trains one model across many private data owners".split()

    def text(n):
        return " ".join(rng.choice(words) for _ in range(n))

    data = {}
    for c in range(clients):
        rows = []
        for _ in range(per_client):
            if pairs:
                rows.append({"prompt": text(seq // 40), "chosen": text(seq // 12),
                             "rejected": text(seq // 12)})
            else:
                rows.append({"instruction": text(seq // 40), "response": text(seq // 6)})
        data[f"c{c}"] = rows
    path.write_text(json.dumps(data))
    return path


def run_case(model_dir: Path, data: Path, out: Path, *, task: str, batch: int, steps: int,
             seq: int, checkpointing: bool, quant: str, device: str) -> dict:
    """fedllm's client update (one client, ``steps`` steps) in this process, then the same
    steps in a plain loop over the same model; timings after one warm-up step each."""
    import torch
    from rich.console import Console

    from fedllm.config import apply_override, resolve
    from fedllm.context import client_context
    from fedllm.messages import ClientInstruction
    from fedllm.trainer import local_update

    cfg: dict = {}
    for o in [f"model.name_or_path={model_dir}", "model.dtype=bfloat16",
              f"model.quantization={quant}", "runtime.mixed_precision=bf16",
              f"runtime.device={device}", f"task.name={task}", f"task.max_length={seq}",
              "task.overflow=truncate", "dataset.name=fedllm-bench-json", f"dataset.path={data}",
              "peft.target_modules=all-linear", "peft.dropout=0.0", f"train.batch_size={batch}",
              f"train.local_steps={steps}", f"train.gradient_checkpointing={checkpointing}",
              "evaluators=[]", f"output_dir={out}"]:
        apply_override(cfg, o)
    ctx = client_context(resolve(cfg), console=Console(stderr=True, quiet=True))
    dev = ctx.device
    cid = ctx.dataset.client_ids[0]
    data_k = ctx.client_data(cid)
    theta = ctx.get_params()

    def instruction(n: int, seed: int) -> ClientInstruction:
        ctx.config.train.local_steps = n
        return ClientInstruction(cohort="global", round=0, client_id=cid, params=theta,
                                 lr=1e-4, seed=seed)

    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    local_update(ctx, instruction(1, 0), data_k)  # warm-up
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    sync()
    t0 = time.perf_counter()
    up = local_update(ctx, instruction(steps, 1), data_k)
    sync()
    engine_s = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated() / 2**30 if dev.type == "cuda" else None
    tokens = _tokens(ctx, data_k, steps, batch, seed=1)
    plain_s = _plain(ctx, data_k, steps, batch, seed=1)
    return {"engine_s": engine_s, "plain_s": plain_s, "tokens": tokens, "peak_gib": peak,
            "loss": up.metrics.get("train_loss")}


def _batches(ctx, data_k, steps: int, batch: int, seed: int):
    from fedllm.trainer import batch_order, draw_indices

    draw = draw_indices(len(data_k), steps * batch, seed)
    rows = data_k.select(draw).to_list()
    for idx in batch_order(list(range(len(rows))), batch, steps, seed):
        yield [rows[i] for i in idx]


def _tokens(ctx, data_k, steps, batch, seed) -> int:
    total = 0
    for chunk in _batches(ctx, data_k, steps, batch, seed):
        b = ctx.call("fedllm_collate", examples=chunk)
        total += int(b["attention_mask"].sum()) if "attention_mask" in b else \
            int(b["input_ids"].numel())
    return total


def _plain(ctx, data_k, steps: int, batch: int, seed: int) -> float:
    """The same steps on the same batches: collate, loss, backward, AdamW step; nothing else."""
    import torch
    from accelerate.utils import send_to_device

    params = list(ctx.trainable.values())
    opt = torch.optim.AdamW(params, lr=1e-4)
    model = ctx.model
    model.train()
    sync = torch.cuda.synchronize if ctx.device.type == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    for chunk in _batches(ctx, data_k, steps, batch, seed):
        b = send_to_device(ctx.call("fedllm_collate", examples=chunk), ctx.device)
        with ctx.accelerator.autocast():
            loss, _ = ctx.call("fedllm_loss", model=model, batch=b)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    sync()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="tiny shapes on the CPU")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args()
    import torch

    cuda = torch.cuda.is_available() and not args.smoke
    shape, seq = (ONE_B, 1024) if not args.smoke else (SMOKE, 512)
    steps = args.steps or (8 if cuda else 2)
    sft_batch, dpo_batch = (16, 8) if not args.smoke else (4, 2)
    device = "cuda" if cuda else "cpu"
    work = Path(tempfile.mkdtemp(prefix="fedllm-gpu-"))
    os.environ.setdefault("FEDLLM_HOME", str(work / "home"))
    model_dir = write_model(work / "model", shape)
    sft_data = write_data(work / "sft.json", seq, 2, sft_batch * (steps + 1), pairs=False)
    dpo_data = write_data(work / "dpo.json", seq, 2, dpo_batch * (steps + 1), pairs=True)
    flops_tok, six_n = model_flops_per_token(shape, seq)
    peak = peak_flops(torch.device(device))
    cases = [("sft", sft_batch, False, "none"), ("sft", sft_batch, True, "none"),
             ("sft", sft_batch, True, "4bit"), ("dpo", dpo_batch, False, "none"),
             ("dpo", dpo_batch, True, "none")]
    if not cuda:
        cases = [c for c in cases if c[3] == "none"][:3]
    results = []
    name = torch.cuda.get_device_name(0) if cuda else "cpu"
    print(f"device {name}; Llama hidden {shape['hidden_size']} x {shape['num_hidden_layers']} "
          f"layers ({six_n / 6 / 1e9:.2f}B parameters); seq {seq}; {steps} steps per case")
    print(f"{'case':34}{'tok/s':>10}{'MFU':>8}{'MFU 6N':>8}{'peak GiB':>10}{'eng/plain':>11}")
    for task, batch, ckpt, quant in cases:
        r = run_case(model_dir, sft_data if task == "sft" else dpo_data, work / "runs",
                     task=task, batch=batch, steps=steps, seq=seq, checkpointing=ckpt,
                     quant=quant, device=device)
        tps = r["tokens"] / r["engine_s"]
        mfu = tps * flops_tok / peak if peak else None
        mfu6 = tps * six_n / peak if peak else None
        label = f"{task} batch {batch}{' ckpt' if ckpt else ''}{' 4bit' if quant != 'none' else ''}"
        row = {"case": label, "tokens_per_s": tps, "mfu": mfu, "mfu_6n": mfu6,
               "peak_gib": r["peak_gib"], "engine_over_plain": r["engine_s"] / r["plain_s"],
               "loss": r["loss"]}
        results.append(row)
        fmt = lambda x, f: f.format(x) if x is not None else "-"  # noqa: E731
        print(f"{label:34}{tps:10.0f}{fmt(mfu, '{:8.1%}'):>8}{fmt(mfu6, '{:8.1%}'):>8}"
              f"{fmt(r['peak_gib'], '{:10.2f}'):>10}{row['engine_over_plain']:11.3f}")
    sft = next((r for r in results if r["case"] == f"sft batch {sft_batch}"), None)
    dpo = next((r for r in results if r["case"] == f"dpo batch {dpo_batch}"), None)
    if sft and dpo and sft["peak_gib"] and dpo["peak_gib"]:
        print(f"DPO / SFT peak memory at the paper's pairing: "
              f"{dpo['peak_gib'] / sft['peak_gib']:.2f}x (target <= 1.1)")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
