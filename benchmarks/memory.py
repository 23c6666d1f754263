"""Peak memory of a DPO round against an SFT round on the same model and sequence length.

DPO scores every pair twice (policy with the adapter, reference with it switched off) and
both answers of a pair in one concatenated forward. What must not happen is a second copy of
the base model: the DPO/SFT ratio of peak memory has to stay <= 1.1.

Each measurement runs one federated round in a fresh process (so allocator caches and the
model load of one case cannot hide the other's), on a random Llama larger than ``tiny``
(built offline once under ``$FEDLLM_HOME``), where every sequence is the vicuna prompt (about
175 tokens) plus an answer of exactly ``--answer`` tokens (the byte-level tokenizer gives one
token per character), so SFT sequences and DPO chosen / rejected sequences have the same
length. Reported per case:

* ``peak_rss_mb``: the process's peak resident memory (``ru_maxrss``), i.e. what the machine
  must provide for the run;
* ``round_mb``: the peak RSS sampled during the round minus the RSS just before it, i.e. the
  memory the local training itself adds (activations, gradients, optimizer state, and the
  memory-mapped base weights paged in by the first forward, the same in both cases).

The ``same`` pairing is not bound by 1.1 on small models: a DPO micro-batch of B pairs
forwards 2B sequences (trl's concatenated chosen + rejected forward), so activation memory,
which dominates for small models on CPU, is larger; with LLM-sized weights it shrinks to 1.

Pairings: ``table7`` compares DPO batch B with SFT batch 2B, the batch sizes of FedLLM-Bench's
Table 7 (DPO 8, SFT 16), so both forward the same number of sequences per step; ``same``
compares equal ``batch_size`` (a DPO batch then holds twice the sequences).

    python benchmarks/memory.py                  # defaults: hidden 512, 8 layers, answer 128, B 4
    python benchmarks/memory.py --hidden 256 --layers 4 --answer 64 --batch 2
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rss import Sampler, rss_mb  # benchmarks/rss.py, beside this script

ROOT = Path(__file__).resolve().parents[1]


def write_data(path: Path, task: str, answer_len: int, clients: int, samples: int) -> None:
    """Samples whose answers are ``answer_len`` tokens with their EOS."""
    answer = answer_len - 1
    data = {}
    for c in range(clients):
        rows = []
        for i in range(samples):
            a = (f"{c}{i} " * answer)[:answer]
            if task == "dpo":
                rows.append({"prompt": "P", "chosen": a, "rejected": a[::-1]})
            else:
                rows.append({"instruction": "P", "response": a})
        data[f"c{c}"] = rows
    path.write_text(json.dumps(data))


def child(args) -> dict:
    from rich.console import Console

    from fedllm.config import resolve
    from fedllm.engine import Engine

    work = Path(args.work)
    data = work / f"{args.task}.json"
    write_data(data, args.task, args.answer, args.clients, args.samples)
    cfg = {
        "output_dir": str(work / "runs"), "name": f"{args.task}-{args.batch}",
        "rounds": 1, "clients_per_round": args.clients, "checkpoint_every": 0, "seed": 0,
        "model": {"name_or_path": args.model},
        "train": {"local_steps": args.steps, "batch_size": args.batch, "lr": 1e-4},
        "runtime": {"threads": 1},
        "dataset": {"name": "fedllm-bench-json", "path": str(data)},
        "task": {"name": args.task, "template": "vicuna", "max_length": 1024,
                 "overflow": "error"},
        "evaluators": [],
    }
    eng = Engine.new(resolve(cfg), console=Console(stderr=True, quiet=True), progress=False)
    first = eng.ctx.encoded["train"][0]
    seq_len = (len(first["input_ids"]) if args.task == "sft"
               else len(first["prompt_ids"]) + len(first["chosen_ids"]))
    before = rss_mb()
    sampler = Sampler()
    sampler.start()
    t0 = time.perf_counter()
    eng.run()
    wall = time.perf_counter() - t0
    sampler.stop.set()
    sampler.join()
    return {"task": args.task, "batch": args.batch, "rss_before_mb": before,
            "round_peak_rss_mb": sampler.peak, "round_mb": sampler.peak - before,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "wall_s": wall, "seq_len": seq_len,
            "train_loss": eng.history[-1]["train_loss"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--answer", type=int, default=128, help="answer tokens per sequence")
    ap.add_argument("--batch", type=int, default=4, help="DPO pairs per micro-batch (B)")
    ap.add_argument("--steps", type=int, default=3, help="local steps per client")
    ap.add_argument("--clients", type=int, default=2)
    ap.add_argument("--samples", type=int, default=24, help="samples per client")
    ap.add_argument("--child", choices=["sft", "dpo"], help=argparse.SUPPRESS)
    ap.add_argument("--task", help=argparse.SUPPRESS)
    ap.add_argument("--work", help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        args.task = args.child
        print(json.dumps(child(args)))
        return

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.path.insert(0, str(ROOT))
    from fedllm.tiny import ensure_tiny

    home = Path(os.environ.setdefault("FEDLLM_HOME", tempfile.mkdtemp(prefix="fedllm-bench-")))
    shape = dict(hidden_size=args.hidden, intermediate_size=2 * args.hidden,
                 num_hidden_layers=args.layers, num_attention_heads=8, num_key_value_heads=4,
                 max_position_embeddings=1024)
    model = ensure_tiny(home / "models" / f"bench-h{args.hidden}-l{args.layers}", **shape)
    cases = [("sft", 2 * args.batch), ("dpo", args.batch), ("sft", args.batch)]
    results = {}
    with tempfile.TemporaryDirectory() as work:
        for task, batch in cases:
            cmd = [sys.executable, __file__, "--child", task, "--batch", str(batch),
                   "--work", work, "--model", str(model),
                   "--answer", str(args.answer), "--steps", str(args.steps),
                   "--clients", str(args.clients), "--samples", str(args.samples)]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT)
            results[(task, batch)] = json.loads(out.stdout.strip().splitlines()[-1])

    weights_mb = sum(f.stat().st_size for f in Path(model).glob("*.safetensors")) / 2**20
    dpo_len = results[("dpo", args.batch)]["seq_len"]
    sft_len = results[("sft", args.batch)]["seq_len"]
    print(f"model: hidden {args.hidden}, {args.layers} layers, {weights_mb:.1f} MB of weights; "
          f"sequences of {dpo_len} tokens (SFT {sft_len}), {args.steps} local steps x "
          f"{args.clients} clients, "
          f"1 torch thread")
    print(f"{'case':<22}{'peak RSS MB':>12}{'round +MB':>11}{'wall s':>8}")
    for (task, batch), r in results.items():
        label = f"{task} batch {batch}" + (" pairs" if task == "dpo" else " seqs")
        print(f"{label:<22}{r['peak_rss_mb']:>12.1f}{r['round_mb']:>11.1f}{r['wall_s']:>8.2f}")
    dpo = results[("dpo", args.batch)]
    for name, sft in (("table7", results[("sft", 2 * args.batch)]),
                      ("same", results[("sft", args.batch)])):
        ratio = dpo["peak_rss_mb"] / sft["peak_rss_mb"]
        print(f"{name:>6}: DPO/SFT peak RSS {ratio:.3f} ({'ok' if ratio <= 1.1 else 'OVER 1.1'}), "
              f"round increment {dpo['round_mb']:.1f} / {sft['round_mb']:.1f} MB")


if __name__ == "__main__":
    main()
