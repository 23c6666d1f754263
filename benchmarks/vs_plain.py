"""What a user pays for fedllm: the whole ``fedllm run`` process against a plain torch + peft
script (``plain_sft.py``) doing the same optimizer steps on the same batches, in the same venv,
interleaved, median of N. Whole-process wall time and peak RSS, start-up included; the start-up
share (process time outside the training rounds) is reported separately.

    .venv/bin/python benchmarks/vs_plain.py [--runs 3] [--rounds 5] [--features]

Setting (FedLLM-Bench's own small one): a random Llama of hidden 256 x 4 layers with the byte
tokenizer, LoRA r16 on q/v, 20 clients, 5 rounds x 2 clients x 10 steps, batch 4, sequence
256; fedllm with evaluation and checkpoints off, as the plain script has neither.
``--features`` also times fedllm with its defaults on (held-out evaluation, checkpoints).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from overhead import SHAPE, make_data  # noqa: E402

FEDLLM = str(Path(sys.executable).with_name("fedllm"))


def measure(argv: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """(wall seconds, peak RSS MiB, stdout) of one child process."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env,
                            text=True)
    out = proc.stdout.read() if proc.stdout else ""
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{argv[:3]} failed (exit {status})")
    return wall, usage.ru_maxrss / 1024, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--features", action="store_true")
    args = ap.parse_args()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    work = Path(tempfile.mkdtemp(prefix="fedllm-vs-plain-"))
    env["FEDLLM_HOME"] = str(work / "home")
    from fedllm.tiny import ensure_tiny

    model_dir = ensure_tiny(work / "model", **SHAPE)
    data = work / "data.json"
    make_data(data, clients=20, per_client=40)
    k, steps, batch, lr, max_len = 2, 10, 4, 1e-3, 256
    common = ["--no-progress", "--set", f"model.name_or_path={model_dir}",
              "--set", "dataset.name=fedllm-bench-json", "--set", f"dataset.path={data}",
              "--set", f"rounds={args.rounds}", "--set", f"clients_per_round={k}",
              "--set", f"train.local_steps={steps}", "--set", f"train.batch_size={batch}",
              "--set", f"train.lr={lr}", "--set", f"task.max_length={max_len}",
              "--set", "peft.dropout=0.0", "--set", "runtime.threads=1",
              "--set", "runtime.device=cpu"]
    lean = ["--set", "evaluators=[]", "--set", "checkpoint_every=0", "--set", "eval_every=0"]
    rows: dict[str, list[tuple[float, float, float]]] = {"fedllm": [], "plain": []}
    if args.features:
        rows["fedllm (eval + checkpoints)"] = []
    # warm-up: the tiny model, the encoded-data cache, the page cache (not timed)
    measure([FEDLLM, "run", *common, *lean, "--set", f"output_dir={work}/warm"], env)
    for i in range(args.runs):
        order = ["fedllm", "plain"] if i % 2 == 0 else ["plain", "fedllm"]
        if args.features:
            order.append("fedllm (eval + checkpoints)")
        for which in order:
            out_dir = work / f"{which.split()[0]}-{i}-{len(rows[which])}"
            if which == "plain":
                wall, rss, out = measure([sys.executable, str(HERE / "plain_sft.py"),
                                          str(model_dir), str(data), str(out_dir),
                                          str(args.rounds), str(k), str(steps), str(batch),
                                          str(lr), str(max_len)], env)
                loop = float(out.strip().rsplit("loop_s=", 1)[1])
            else:
                extra = lean if which == "fedllm" else []
                wall, rss, _ = measure([FEDLLM, "run", *common, *extra, "--set",
                                        f"output_dir={out_dir}", "--set", "name=r"], env)
                recs = [json.loads(line) for line in
                        (out_dir / "r" / "metrics.jsonl").read_text().splitlines()]
                loop = sum(r["wall_s"] for r in recs)
            rows[which].append((wall, rss, wall - loop))
    med = {w: tuple(statistics.median(x[j] for x in v) for j in range(3)) for w, v in rows.items()}
    print(f"{args.rounds} rounds x {k} clients x {steps} steps, batch {batch}, seq {max_len}; "
          f"median of {args.runs} interleaved whole-process runs")
    print(f"{'':30}{'wall s':>9}{'peak RSS MiB':>14}{'start-up s':>12}{'start-up %':>12}")
    for w, (wall, rss, start) in med.items():
        print(f"{w:30}{wall:9.2f}{rss:14.0f}{start:12.2f}{100 * start / wall:11.0f}%")
    f, p = med["fedllm"], med["plain"]
    print(f"fedllm / plain: wall {f[0] / p[0]:.3f}x (target <= 1.05), peak RSS "
          f"{f[1] / p[1]:.3f}x (target <= 1.05); start-up {f[2]:.2f} s vs {p[2]:.2f} s; "
          f"training rounds {f[0] - f[2]:.2f} s vs {p[0] - p[2]:.2f} s")


if __name__ == "__main__":
    main()
