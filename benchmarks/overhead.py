"""Engine overhead vs a plain PyTorch + peft loop, and memory vs number of clients.

    .venv/bin/python benchmarks/overhead.py            # both parts
    .venv/bin/python benchmarks/overhead.py --part time
    .venv/bin/python benchmarks/overhead.py --part memory

Time: a Llama with hidden 256 / 4 layers, LoRA r 16, 5 rounds x 2 sampled clients x 10 local
steps (batch 4, sequence length 256) through the engine, and the same optimizer steps on the
same batches in a hand-written loop over the same PeftModel, in the same process; repeated and
interleaved, best of each reported, ratio = engine / plain (target <= 1.05).

Memory: peak RSS of the same run with 20 and with 2,000 clients, each in a fresh process
(target: <= 5% growth).
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

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

SHAPE = dict(hidden_size=256, intermediate_size=512, num_hidden_layers=4,
             num_attention_heads=4, num_key_value_heads=2)
WORDS = "federated learning trains one model across many private data owners".split()


def make_data(path: Path, clients: int, per_client: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    data = {}
    for c in range(clients):
        rows = []
        for _ in range(per_client):
            ins = " ".join(rng.choice(WORDS) for _ in range(5))
            resp = " ".join(rng.choice(WORDS) for _ in range(50))
            rows.append({"instruction": ins, "response": resp})  # > 256 byte tokens
        data[f"c{c:05d}"] = rows
    path.write_text(json.dumps(data))


def config(model_dir: Path, data: Path, out: Path, name: str) -> dict:
    return {
        "name": name, "output_dir": str(out), "rounds": 5, "clients_per_round": 2,
        "checkpoint_every": 0, "eval_every": 0, "evaluators": [],
        "model": {"name_or_path": str(model_dir)},
        "train": {"local_steps": 10, "batch_size": 4, "lr": 1e-3},
        "peft": {"name": "lora", "r": 16, "alpha": 32, "dropout": 0.0},
        "task": {"name": "sft", "max_length": 256},
        "dataset": {"name": "fedllm-bench-json", "path": str(data)},
    }


def engine(cfg: dict):
    from rich.console import Console

    from fedllm.config import resolve
    from fedllm.engine import Engine

    return Engine.new(resolve(cfg), console=Console(stderr=True, quiet=True), progress=False)


def plain_loop(ctx, rounds: list[list[tuple[float, list]]]) -> float:
    """The same steps with nothing but torch + the PeftModel: load θ, AdamW, steps, average."""
    import torch

    params = list(ctx.trainable.values())
    model = ctx.model
    glob = [p.detach().clone() for p in params]
    t0 = time.perf_counter()
    for clients in rounds:
        acc = [torch.zeros_like(g) for g in glob]
        total = 0
        for lr, batches in clients:
            with torch.no_grad():
                for p, g in zip(params, glob):
                    p.copy_(g)
            opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
            model.train()
            for b in batches:
                out = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"],
                            labels=b["labels"])
                out.loss.backward()
                opt.step()
                opt.zero_grad(set_to_none=True)
            n = 1
            for a, p in zip(acc, params):
                a.add_(p.detach(), alpha=n)
            total += n
        glob = [a / total for a in acc]
    return time.perf_counter() - t0


def record_batches(eng) -> list[list[tuple[float, list]]]:
    """The batches the engine draws, re-derived with its own (seeded) functions."""
    from fedllm.config import lr_at
    from fedllm.engine import client_seed
    from fedllm.trainer import batch_order, draw_indices

    ctx, cfg = eng.ctx, eng.cfg
    out = []
    for r in range(cfg.rounds):
        sel = ctx.call("fedllm_sample", cohort="global", clients=ctx.dataset.client_ids,
                                     round=r)
        clients = []
        for cid in sel:
            data = ctx.client_data(cid)
            seed = client_seed(cfg.seed, r, cid)
            t = cfg.train
            draw = draw_indices(len(data), t.local_steps * t.batch_size, seed)
            ex = data.select(draw).to_list()
            batches = [ctx.call("fedllm_collate", examples=[ex[i] for i in idx])
                       for idx in batch_order(list(range(len(ex))), t.batch_size,
                                              t.local_steps, seed)]
            clients.append((lr_at(t, r, cfg.rounds), batches))
        out.append(clients)
    return out


def part_time(tmp: Path, repeats: int) -> None:
    from fedllm.tiny import ensure_tiny

    model_dir = ensure_tiny(tmp / "model", **SHAPE)
    data = tmp / "data.json"
    make_data(data, clients=20, per_client=60)
    eng_times, plain_times = [], []
    first = engine(config(model_dir, data, tmp / "runs", "warm"))
    rounds = record_batches(first)
    assert all(b["input_ids"].shape == (4, 256) for c in rounds for _, bs in c for b in bs)
    plain_loop(first.ctx, rounds[:1])  # warm-up
    first.run()
    for i in range(repeats):
        e = engine(config(model_dir, data, tmp / "runs", f"e{i}"))
        t0 = time.perf_counter()
        e.run()
        eng_times.append(time.perf_counter() - t0)
        plain_times.append(plain_loop(e.ctx, rounds))
    best_e, best_p = min(eng_times), min(plain_times)
    print(f"engine: {best_e:.2f}s  plain torch+peft: {best_p:.2f}s  ratio: {best_e / best_p:.3f}"
          f"  (best of {repeats}; all engine {[round(x, 2) for x in eng_times]}, "
          f"plain {[round(x, 2) for x in plain_times]}; torch threads "
          f"{__import__('torch').get_num_threads()})")


def part_memory(tmp: Path) -> None:
    """Peak RSS vs client count, two ways: the same total data split over 20 or 2,000 clients
    (what the client count itself costs), and the same data per client (data grows 100x)."""
    from fedllm.tiny import ensure_tiny

    ensure_tiny(tmp / "model", **SHAPE)
    peaks = {}
    for n, per in ((20, 1200), (2000, 12), (20, 12)):
        data = tmp / f"data{n}x{per}.json"
        make_data(data, clients=n, per_client=per)
        res = subprocess.run([sys.executable, __file__, "--part", "_child", "--tmp", str(tmp),
                              "--data", str(data), "--name", f"m{n}x{per}"],
                             capture_output=True, text=True, check=True)
        peaks[n, per] = json.loads(res.stdout.strip().splitlines()[-1])["peak_rss_mb"]
    a, b, c = peaks[20, 1200], peaks[2000, 12], peaks[20, 12]
    print(f"peak RSS, same 24,000 samples: 20 clients {a:.1f} MB, 2000 clients {b:.1f} MB, "
          f"growth {100 * (b / a - 1):+.1f}%")
    print(f"peak RSS, 12 samples per client: 20 clients {c:.1f} MB, 2000 clients {b:.1f} MB, "
          f"growth {100 * (b / c - 1):+.1f}% (data 100x larger)")


def child(tmp: Path, data: Path, name: str) -> None:
    e = engine(config(tmp / "model", data, tmp / "runs", name))
    setup = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    e.run()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"peak_rss_mb": peak, "after_setup_mb": setup}))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--part", default="all", choices=["all", "time", "memory", "_child"])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads for both loops (1 is stable on a shared 2-core box)")
    ap.add_argument("--tmp")
    ap.add_argument("--data")
    ap.add_argument("--name")
    a = ap.parse_args()
    import torch

    torch.set_num_threads(a.threads)
    if a.part == "_child":
        return child(Path(a.tmp), Path(a.data), a.name)
    with tempfile.TemporaryDirectory() as d:
        os.environ.setdefault("FEDLLM_HOME", d)
        if a.part in ("all", "time"):
            part_time(Path(d), a.repeats)
        if a.part in ("all", "memory"):
            part_memory(Path(d))


if __name__ == "__main__":
    main()
