"""Whole-process latency of the fedllm CLI: the median of N runs of each command, printed next
to ``python -c pass`` (the interpreter's own start-up, the floor) and the targets.

    .venv/bin/python benchmarks/cli_latency.py [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

FEDLLM = str(Path(sys.executable).with_name("fedllm"))
COMMANDS = {  # label: (argv, target seconds)
    "python -c pass": ([sys.executable, "-c", "pass"], None),
    "fedllm --help": ([FEDLLM, "--help"], 0.5),
    "fedllm plugins": ([FEDLLM, "plugins"], 1.5),
    "fedllm run --dry-run": ([FEDLLM, "run", "--dry-run"], 2.0),
}


def median_seconds(argv: list[str], runs: int) -> float:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                       check=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    subprocess.run([FEDLLM, "run", "--dry-run"], capture_output=True)  # warm the page cache
    print(f"{'command':<24}{'median s':>10}{'target s':>10}  (median of {args.runs}; "
          f"load {os.getloadavg()[0]:.2f})")
    for label, (argv, target) in COMMANDS.items():
        s = median_seconds(argv, args.runs)
        mark = "" if target is None else ("  ok" if s <= target else "  OVER")
        print(f"{label:<24}{s:>10.2f}{'' if target is None else f'{target:>10.1f}'}{mark}")


if __name__ == "__main__":
    main()
