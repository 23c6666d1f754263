"""Run untrusted generated programs: one fresh process per program.

Defences, in layers:

* a throw-away working directory per program (removed afterwards), in the system temp dir,
  never under the run directory; HOME and TMPDIR point into it;
* a fresh interpreter (``python -I -S``: no user site, no PYTHON* variables, no site-packages);
* no network: the child runs in a new, empty network namespace (``unshare -n``, or
  ``unshare -rn`` for non-root users) when ``unshare`` works here, and in any case an audit hook
  in the child refuses to create or connect sockets (see ``_sandbox_child.py``);
* resource limits set by the child before the program runs (hard limits: CPU seconds, address
  space, file size, no core dumps) and a wall-clock timeout after which the whole process group
  is killed;
* the audit hook also refuses writes outside the working directory, any access to denied paths
  (the run directory), subprocesses, forks and ctypes.

This is defence in depth for benchmark code, not a security boundary against a determined
attacker (a container or VM is that).
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

CHILD = Path(__file__).with_name("_sandbox_child.py")


@dataclass
class Result:
    status: str  # passed | failed | timeout
    returncode: int | None
    seconds: float
    stderr: str

    @property
    def passed(self) -> bool:
        return self.status == "passed"


@functools.lru_cache(maxsize=1)
def network_isolation() -> list[str]:
    """The command prefix that gives the child an empty network namespace, or [] if none
    works here (then only the audit hook blocks sockets)."""
    exe = shutil.which("unshare")
    if not exe:
        return []
    for prefix in ([exe, "-n"], [exe, "-r", "-n"]):
        try:
            ok = subprocess.run([*prefix, "true"], capture_output=True, timeout=10).returncode == 0
        except (OSError, subprocess.SubprocessError):
            ok = False
        if ok:
            return prefix
    return []


def run_program(source: str, *, timeout: float = 10.0, memory_mb: int = 2048,
                cpu_seconds: int | None = None, max_file_mb: int = 16,
                deny: list[str | os.PathLike] = (), network_namespace: bool = True) -> Result:
    """Run ``source`` in a sandboxed child; ``passed`` iff it exits 0 within ``timeout``."""
    work = Path(tempfile.mkdtemp(prefix="fedllm-sandbox-"))
    try:
        prog = work / "program.py"
        prog.write_text(source, encoding="utf-8")
        limits = {"cpu": int(cpu_seconds or (int(timeout) + 1)),
                  "memory": int(memory_mb) * 2**20, "fsize": int(max_file_mb) * 2**20,
                  "deny": [str(Path(d).resolve()) for d in deny]}
        cmd = [sys.executable, "-I", "-S", "-B", str(CHILD), str(prog), str(work),
               json.dumps(limits)]
        if network_namespace:
            cmd = network_isolation() + cmd
        env = {"PATH": "/usr/bin:/bin", "HOME": str(work), "TMPDIR": str(work),
               "LANG": "C.UTF-8", "PYTHONHASHSEED": "0"}
        t0 = time.perf_counter()
        with open(work / "stdout", "wb") as out, open(work / "stderr", "wb") as err:
            proc = subprocess.Popen(cmd, cwd=work, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=err, start_new_session=True)
            try:
                rc = proc.wait(timeout=timeout)
                status = "passed" if rc == 0 else "failed"
            except subprocess.TimeoutExpired:
                rc, status = None, "timeout"
            finally:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)  # the whole group, whatever it did
                except ProcessLookupError:
                    pass
                proc.wait()
        if rc is not None and rc < 0 and -rc in (signal.SIGXCPU, signal.SIGKILL):
            status = "timeout" if -rc == signal.SIGXCPU else status
        stderr = (work / "stderr").read_bytes()[-2000:].decode("utf-8", "replace")
        return Result(status, rc, time.perf_counter() - t0, stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)
