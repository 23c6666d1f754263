"""Round throughput of ``flower-sim`` with 1, 2, ... parallel client workers, one command.

Each configuration is a fresh ``fedllm run --backend flower-sim`` process, timed whole (Ray
start, model loads, every round); the rounds' own wall times come from its metrics.jsonl. The
config makes client compute dominate (K clients per round on K virtual SuperNodes, many local
steps, 1 torch thread per worker). On CPU it compares ``workers`` 1 and 2 (``--workers`` to
change); with CUDA it detects the G GPUs and runs 1..G workers with ``gpus_per_worker=1``
(``--gpus-per-worker 0.5`` for two per GPU), unattended. It also checks that every run ends with
the same adapter (bit-identical on CPU).

    .venv/bin/python benchmarks/parallel.py [--workers 1,2] [--clients 4] [--local-steps 24]
        [--rounds 3] [--repeat 2] [--cpu]

Prints one JSON object: per worker count the median round time over rounds 2+ (round 1 loads
the model in each worker), clients per second, the whole-process time, and the ratios to 1 worker
(``round_speedup``: throughput from round times; ``process_speedup``: from whole-process time).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FEDLLM = str(Path(sys.executable).parent / "fedllm")
WORDS = "alpha beta gamma delta river stone cloud light music paper garden window".split()


def write_data(path: Path, clients: int, samples: int) -> None:
    rng = random.Random(0)
    path.write_text(json.dumps({
        f"client{c:02d}": [{"instruction": f"Repeat {' '.join(rng.choices(WORDS, k=6))}.",
                            "response": " ".join(rng.choices(WORDS, k=8)) + "."}
                           for _ in range(samples)] for c in range(clients)}))


def cuda_devices() -> int:
    try:
        import torch
    except ImportError:
        return 0
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def run(tmp: Path, name: str, sets: list[str]) -> dict:
    cmd = [FEDLLM, "run", "--no-progress", "--backend", "flower-sim",
           *[x for s in [*sets, f"name={name}"] for x in ("--set", s)]]
    t = time.perf_counter()
    with open(tmp / f"{name}.log", "w") as log:
        rc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, timeout=3600).returncode
    total = time.perf_counter() - t
    if rc:
        raise SystemExit(f"{name} failed ({rc}); see {tmp / name}.log")
    recs = [json.loads(x) for x in (tmp / "runs" / name / "metrics.jsonl").read_text()
            .splitlines()]
    later = [r["wall_s"] for r in recs[1:]] or [recs[0]["wall_s"]]
    clients = len(recs[-1]["cohorts"]["global"]["clients"])
    adapter = (tmp / "runs" / name / "adapter" / "adapter_model.safetensors").read_bytes()
    return {"round_s": [round(r["wall_s"], 3) for r in recs],
            "round_s_median": statistics.median(later),
            "clients_per_s": clients / statistics.median(later),
            "process_s": round(total, 2),
            "model_loads": [r.get("client_model_loads") for r in recs],
            "adapter_sha256": hashlib.sha256(adapter).hexdigest()[:16]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", default=None,
                    help="comma-separated worker counts (default: 1,2 on CPU; 1..G on G GPUs)")
    ap.add_argument("--clients", type=int, default=4, help="clients per round (and nodes)")
    ap.add_argument("--local-steps", type=int, default=24)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--cpu", action="store_true", help="CPU workers even if CUDA is present")
    ap.add_argument("--gpus-per-worker", type=float, default=1.0)
    ap.add_argument("--threads", type=int, default=1, help="torch threads per worker")
    ap.add_argument("--repeat", type=int, default=1,
                    help="run the worker counts this many times, interleaved (1,2,1,2...); "
                    "each figure is the best repeat (a shared machine's noise only slows)")
    ap.add_argument("--set", dest="extra", action="append", default=[],
                    help="extra config overrides (e.g. model.path=... on a GPU machine)")
    a = ap.parse_args()
    gpus = 0 if a.cpu else cuda_devices()
    workers = ([int(w) for w in a.workers.split(",")] if a.workers else
               (list(range(1, gpus + 1)) if gpus else [1, 2]))
    tmp = Path(tempfile.mkdtemp(prefix="fedllm-parallel-"))
    os.environ.setdefault("FEDLLM_HOME", str(tmp / "home"))
    os.environ.update(OMP_NUM_THREADS=str(a.threads), HF_HUB_OFFLINE="1",
                      HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    data = tmp / "fed.json"
    write_data(data, a.clients, a.local_steps * a.batch_size)
    base = [f"rounds={a.rounds}", f"clients_per_round={a.clients}", "eval_every=0",
            "evaluators=[]", f"train.local_steps={a.local_steps}",
            f"train.batch_size={a.batch_size}", f"runtime.threads={a.threads}", "seed=0",
            "dataset.name=fedllm-bench-json", f"dataset.path={data}", "dataset.heldout=0",
            f"output_dir={tmp}/runs", "checkpoint_every=0",
            f"runtime.backend_options.num_supernodes={a.clients}",
            f"runtime.device={'cuda' if gpus else 'cpu'}", *a.extra]
    if gpus:
        base.append(f"runtime.backend_options.gpus_per_worker={a.gpus_per_worker}")
    out: dict = {"device": f"{gpus} CUDA GPU(s)" if gpus else f"CPU ({os.cpu_count()} cores)",
                 "clients_per_round": a.clients, "local_steps": a.local_steps,
                 "threads_per_worker": a.threads, "runs": {}}
    load0 = os.getloadavg()[0]
    tries: dict[int, list[dict]] = {n: [] for n in workers}
    for i in range(a.repeat):
        for n in workers:
            r = run(tmp, f"w{n}-{i}", [*base, f"runtime.backend_options.workers={n}"])
            tries[n].append(r)
            print(f"workers={n} try {i}: {json.dumps(r)}", file=sys.stderr)
    for n, rs in tries.items():
        best = min(rs, key=lambda r: r["round_s_median"])
        out["runs"][str(n)] = {**best, "process_s": min(r["process_s"] for r in rs),
                               "round_s_median_tries": [round(r["round_s_median"], 3)
                                                        for r in rs]}
    one = out["runs"][str(workers[0])]
    for n in workers[1:]:
        r = out["runs"][str(n)]
        out[f"round_speedup_{n}_vs_{workers[0]}"] = round(
            r["clients_per_s"] / one["clients_per_s"], 3)
        out[f"process_speedup_{n}_vs_{workers[0]}"] = round(one["process_s"] / r["process_s"], 3)
    out["same_adapter"] = len({r["adapter_sha256"] for rs in tries.values() for r in rs}) == 1
    out["load_avg_1m"] = [round(load0, 2), round(os.getloadavg()[0], 2)]
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
