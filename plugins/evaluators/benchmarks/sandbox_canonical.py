"""Run all 164 HumanEval canonical solutions (and, as a control, an empty body for each)
through the sandbox: every canonical solution must pass and every empty body must fail.
Prints pass counts and sandbox throughput.

    .venv/bin/python plugins/evaluators/benchmarks/sandbox_canonical.py \
        /work/shared/data/eval/humaneval/HumanEval.jsonl.gz [workers]
"""

from __future__ import annotations

import gzip
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from fedllm_evaluators.humaneval import build_program
from fedllm_evaluators.sandbox import network_isolation, run_program


def main() -> None:
    path = sys.argv[1]
    workers = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    with gzip.open(path, "rt") as f:
        problems = [json.loads(line) for line in f]
    print(f"{len(problems)} problems, {workers} workers, network isolation: "
          f"{' '.join(network_isolation()) or 'audit hook only'}")
    for label, body in (("canonical", lambda p: p["canonical_solution"]),
                        ("empty body", lambda p: "    pass\n")):
        t0 = time.perf_counter()
        with ThreadPoolExecutor(workers) as pool:
            results = list(pool.map(lambda p: run_program(build_program(p, body(p))), problems))
        dt = time.perf_counter() - t0
        passed = sum(r.passed for r in results)
        bad = [p["task_id"] for p, r in zip(problems, results) if r.passed != (label == "canonical")]
        print(f"{label}: {passed}/{len(problems)} passed in {dt:.1f} s "
              f"({len(problems) / dt:.1f} programs/s); unexpected: {bad[:10]}")


if __name__ == "__main__":
    main()
