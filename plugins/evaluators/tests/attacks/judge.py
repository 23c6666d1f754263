"""The judge: the process that runs the attack programs, as an evaluator would. It is started
with the fake judge key in its *exec-time* environment (so ``/proc/<judge>/environ`` shows it,
like a real evaluator holding an API key) and with a marker in its command line.

    python judge.py PLAN.json RESULTS.json MARKER

PLAN: a list of runs ``{"id", "mode", "source", "kwargs", "dir", "leak_dir"}``. Mode
``control`` runs the program as a plain ``python -I -S`` child (environment inherited, the old
unsandboxed way; a careless runner's inherited fd when ``leak_dir`` is set); every other mode
runs it through ``run_program`` with the keyword arguments of ``MODES``. All runs go at once in
threads; the results (``run_program``'s Result fields plus wall-clock start/end) are written as
JSON.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict

from fedllm_evaluators.sandbox import run_program

MODES = {
    "sandbox": {},                                       # the default, every layer on
    "bwrap-ns": {"mechanism": "bwrap", "audit_hook": False, "seccomp": False},
    "launcher-ns": {"mechanism": "launcher", "audit_hook": False, "seccomp": False},
}
WORKERS = 6


def run_control(run: dict, source: str) -> dict:
    """The program as a plain child process: what the sandbox is compared against."""
    path = os.path.join(run["dir"], "program.py")
    with open(path, "w") as f:
        f.write(source)
    fds = []
    if run.get("leak_dir"):
        fds.append(os.open(run["leak_dir"], os.O_RDONLY | os.O_DIRECTORY))
    t0 = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen([sys.executable, "-I", "-S", path], cwd=run["dir"],
                                stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                pass_fds=fds)
        for fd in fds:
            os.close(fd)
        try:
            rc = proc.wait(timeout=run["control_timeout"])
            status = "passed" if rc == 0 else "failed"
        except subprocess.TimeoutExpired:
            proc.kill()  # the child only, as subprocess.run(timeout=...) does
            rc, status = proc.wait(), "timeout"
        out.seek(0)
        err.seek(0)
        return {"status": status, "returncode": rc, "seconds": time.perf_counter() - t0,
                "stdout": out.read().decode(errors="replace")[-65536:],
                "stderr": err.read().decode(errors="replace")[-4000:]}


def run_one(run: dict) -> dict:
    source = run["source"].replace("__JUDGE_PID__", str(os.getpid()))
    leak = None
    if run.get("leak_dir") and run["mode"] != "control":
        # the caller holds the directory open (inheritable, even); the sandbox must not pass it
        leak = os.open(run["leak_dir"], os.O_RDONLY | os.O_DIRECTORY)
        os.set_inheritable(leak, True)
    start = time.time()
    try:
        if run["mode"] == "control":
            res = run_control(run, source)
        else:
            res = asdict(run_program(source, **MODES[run["mode"]], **run["kwargs"]))
    except Exception:  # noqa: BLE001 - reported per run; the test fails on it
        res = {"error": traceback.format_exc()}
    finally:
        if leak is not None:
            os.close(leak)
    res.update(id=run["id"], start=start, end=time.time())
    return res


def main() -> None:
    with open(sys.argv[1]) as f:
        plan = json.load(f)
    # the long runs first, so that they overlap with the many short ones
    plan.sort(key=lambda r: -(r.get("expected_seconds") or 0))
    with ThreadPoolExecutor(WORKERS) as pool:
        results = list(pool.map(run_one, plan))
    with open(sys.argv[2], "w") as f:
        json.dump(results, f)


if __name__ == "__main__":
    main()
