"""Wall time per round and peak memory of every FL algorithm on one synthetic config, and the
SCAFFOLD memory check.

Usage (from the repository root)::

    .venv/bin/python benchmarks/algorithms.py
    .venv/bin/python benchmarks/algorithms.py --clients 200 --per-round 10 --rounds 3 \
        --memory-per-round 200 --memory-rounds 2

It writes a synthetic FedLLM-Bench-style release (``{client_id: [samples]}``, 1,000 clients by
default) to a temporary directory and runs each algorithm in a fresh subprocess (so each peak
RSS is that algorithm's own) on the tiny offline model with a deliberately large LoRA adapter
(r=64 on every linear layer, 1 MB): keeping every client's SCAFFOLD control variate in RAM would
then cost ``clients × adapter`` bytes, far beyond 10 % of the process.

Two parts:

1. **timing**: every algorithm on the same config (default: 10 of the 1,000 clients per round,
   as Fed-ChatbotPA samples 10 of 747; 3 rounds): wall time per round and peak RSS;
2. **memory check** (the issue's criterion): FedAvg and SCAFFOLD with *every* client training
   every round (default 1,000 per round, 2 rounds), so SCAFFOLD holds a control variate for all
   1,000 clients and reloads each in round 2; SCAFFOLD's peak RSS must stay within 10 % of
   FedAvg's. Exit status 1 if it does not.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ALGORITHMS = ["fedavg", "local", "fedprox", "scaffold", "fedavgm", "fedadagrad", "fedyogi",
              "fedadam"]
ROOT = Path(__file__).resolve().parents[1]
WORDS = "alpha beta gamma delta river stone cloud light music paper garden window".split()


def write_data(path: Path, clients: int, samples: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    data = {}
    for c in range(clients):
        data[f"client{c:04d}"] = [
            {"instruction": f"Repeat {' '.join(rng.choices(WORDS, k=4))}.",
             "response": " ".join(rng.choices(WORDS, k=5)) + ".", "language": "English"}
            for _ in range(samples)]
    path.write_text(json.dumps(data))


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def worker(args) -> None:
    """Run one algorithm in this (fresh) process; print one JSON line."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    from rich.console import Console

    from fedllm.config import apply_override, resolve
    from fedllm.engine import Engine
    from fedllm.messages import nbytes

    data: dict = {}
    for o in [f"output_dir={args.out}", f"name={args.worker}", f"rounds={args.rounds}",
              f"clients_per_round={args.per_round}", "train.local_steps=1", "train.batch_size=1",
              "runtime.threads=1", "checkpoint_every=1", "eval_every=0", "evaluators=[]",
              "dataset.name=fedllm-bench-json", f"dataset.path={args.data}",
              f"peft.r={args.lora_r}", f"peft.alpha={2 * args.lora_r}",
              "peft.target_modules=all-linear",
              f"algorithm.name={args.worker}"]:
        apply_override(data, o)
    eng = Engine.new(resolve(data), console=Console(stderr=True, quiet=True), progress=False)
    setup_rss = rss_mb()
    t0 = time.perf_counter()
    eng.run()
    total = time.perf_counter() - t0
    state_dir = eng.run_dir.path / "client_state"
    disk = sum(p.stat().st_size for p in state_dir.rglob("*") if p.is_file()) \
        if state_dir.is_dir() else 0
    print(json.dumps({
        "algorithm": args.worker,
        "round_s": [r["wall_s"] for r in eng.history],
        "total_s": total,
        "rss_after_setup_mb": setup_rss,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "adapter_bytes": nbytes(eng.globals[next(iter(eng.globals))]),
        "client_state_disk_mb": disk / 2**20,
    }))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", type=int, default=1000)
    ap.add_argument("--per-round", type=int, default=10, help="timing: clients per round")
    ap.add_argument("--rounds", type=int, default=3, help="timing: rounds")
    ap.add_argument("--memory-per-round", type=int, default=1000,
                    help="memory check: clients per round (default: all)")
    ap.add_argument("--memory-rounds", type=int, default=2, help="memory check: rounds")
    ap.add_argument("--samples", type=int, default=3, help="samples per client")
    ap.add_argument("--algorithms", default=",".join(ALGORITHMS))
    ap.add_argument("--lora-r", type=int, default=64, help="LoRA rank (all linear layers)")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--data", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args)
        return 0

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    with tempfile.TemporaryDirectory(prefix="fedllm-bench-algos-") as tmp:
        data = Path(tmp) / "synthetic.json"
        write_data(data, args.clients, args.samples)

        def one(algo: str, per_round: int, rounds: int, out: str) -> dict | None:
            cmd = [sys.executable, __file__, "--data", str(data), "--rounds", str(rounds),
                   "--per-round", str(per_round), "--out", str(Path(tmp) / out),
                   "--lora-r", str(args.lora_r), "--worker", algo]
            p = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True)
            if p.returncode != 0:
                print(f"{algo}: failed\n{p.stderr[-3000:]}", file=sys.stderr)
                return None
            r = json.loads(p.stdout.strip().splitlines()[-1])
            print(f"  {out} {algo}: {sum(r['round_s']) / len(r['round_s']):.2f} s/round, "
                  f"peak {r['peak_rss_mb']:.0f} MB", file=sys.stderr, flush=True)
            return r

        # warm-up: build the tiny model and the encoded-data cache once, outside the timings
        if one("fedavg", 1, 1, "warmup") is None:
            return 1
        timing = {}
        for algo in args.algorithms.split(","):
            timing[algo] = one(algo, args.per_round, args.rounds, "timing")
            if timing[algo] is None:
                return 1
        memory = {}
        for algo in ("fedavg", "scaffold"):
            memory[algo] = one(algo, args.memory_per_round, args.memory_rounds, "memory")
            if memory[algo] is None:
                return 1

    adapter_mb = next(iter(timing.values()))["adapter_bytes"] / 2**20  # type: ignore[index]
    head = (f"{'algorithm':<12}{'s/round':>9}{'round s (each)':>24}{'peak RSS MB':>13}"
            f"{'RSS after setup':>17}{'client state on disk MB':>25}")

    def table(results):
        print(head)
        for algo, r in results.items():
            each = " ".join(f"{x:.2f}" for x in r["round_s"])
            print(f"{algo:<12}{sum(r['round_s']) / len(r['round_s']):>9.2f}{each:>24}"
                  f"{r['peak_rss_mb']:>13.0f}{r['rss_after_setup_mb']:>17.0f}"
                  f"{r['client_state_disk_mb']:>25.1f}")

    common = (f"{args.clients} clients x {args.samples} samples, 1 local step, batch 1, tiny "
              f"model, LoRA r={args.lora_r} all-linear ({adapter_mb:.2f} MB adapter), 1 thread")
    print(f"\n1. timing: {args.per_round} clients per round, {args.rounds} rounds; {common}\n")
    table(timing)
    print(f"\n2. memory check: {args.memory_per_round} clients per round, "
          f"{args.memory_rounds} rounds; {common}\n")
    table(memory)
    fa, sc = memory["fedavg"]["peak_rss_mb"], memory["scaffold"]["peak_rss_mb"]  # type: ignore[index]
    in_ram = min(args.clients, args.memory_per_round * args.memory_rounds) * adapter_mb
    ok = sc <= 1.10 * fa
    print(f"\nSCAFFOLD peak / FedAvg peak = {sc:.0f} / {fa:.0f} MB = {sc / fa:.3f} "
          f"(limit 1.10): {'PASS' if ok else 'FAIL'}; holding the {args.clients} control "
          f"variates in RAM instead would add about {in_ram:.0f} MB")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
