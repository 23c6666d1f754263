"""Run all 164 HumanEval canonical solutions (and, as a control, an empty body for each)
through the sandbox: every canonical solution must pass and every empty body must fail.
Prints the isolation used, pass counts and seconds per problem (wall clock over all problems
with ``workers`` in parallel, and the mean time of one program).

    .venv/bin/python plugins/evaluators/benchmarks/sandbox_canonical.py \\
        /work/shared/data/eval/humaneval/HumanEval.jsonl.gz [workers] [mechanism]

``mechanism`` (``bwrap`` or ``launcher``) forces one; by default the sandbox picks. The script
also runs against the sandbox before kernel isolation (no ``isolation()``), for comparisons.
"""

from __future__ import annotations

import gzip
import json
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from fedllm_evaluators import sandbox
from fedllm_evaluators.humaneval import build_program


def describe_isolation(mechanism: str) -> str:
    """What isolates the programs, in the words of whichever sandbox is installed."""
    if not hasattr(sandbox, "isolation"):  # the sandbox before kernel isolation
        prefix = " ".join(sandbox.network_isolation())
        return f"audit hook + rlimits, network: {prefix or 'none'} (no kernel isolation)"
    return sandbox.isolation(mechanism).describe()


def main() -> None:
    path = sys.argv[1]
    workers = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    mechanism = sys.argv[3] if len(sys.argv) > 3 else "auto"
    kwargs = {"mechanism": mechanism} if mechanism != "auto" else {}
    with gzip.open(path, "rt") as f:
        problems = [json.loads(line) for line in f]
    n = len(problems)
    print(f"{n} problems, {workers} workers, isolation: {describe_isolation(mechanism)}")
    for label, body in (("canonical", lambda p: p["canonical_solution"]),
                        ("empty body", lambda p: "    pass\n")):
        t0 = time.perf_counter()
        programs = [build_program(p, body(p)) for p in problems]
        with ThreadPoolExecutor(workers) as pool:
            results = list(pool.map(lambda src: sandbox.run_program(src, **kwargs), programs))
        dt = time.perf_counter() - t0
        passed = sum(r.passed for r in results)
        want = label == "canonical"
        bad = [p["task_id"] for p, r in zip(problems, results) if r.passed != want]
        print(f"{label}: {passed}/{n} passed in {dt:.1f} s = {dt / n:.3f} s/problem "
              f"({workers} workers), {statistics.mean(r.seconds for r in results):.3f} s mean "
              f"per program; unexpected: {bad[:10]}")


if __name__ == "__main__":
    main()
