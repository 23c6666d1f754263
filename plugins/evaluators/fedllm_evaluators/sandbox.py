"""Run untrusted generated programs (HumanEval completions): one fresh, kernel-isolated process
tree per program. The program is treated as hostile.

The wall is built by the kernel, outside the interpreter:

* **namespaces**: new user, mount, pid, network, IPC, UTS and cgroup namespaces. The program runs
  as uid 65534 with no capabilities, ``no_new_privs``, in an empty network namespace (loopback
  only, its own), sees only its own processes (it is pid 2; pid 1 is the sandbox's init), and
  cannot create nested user namespaces;
* **filesystem**: a fresh root that is a read-only view of only what ``python -I -S`` needs (the
  interpreter, its stdlib and lib-dynload, the system library dirs and ld.so config), a minimal
  ``/dev`` (null, zero, urandom), a fresh read-only ``/proc`` for the new pid namespace, and a
  size-capped tmpfs at ``/tmp`` (the cwd, HOME and TMPDIR) as the only writable place; the
  host's home directories, ``/etc`` (but for the ld.so files), ``/work``, the run directory,
  ``/usr/bin`` (no shell) and ``/sys`` are simply absent (see ``_sandbox_layout.py``);
* **no inherited state**: an explicit small environment (never the caller's, which may hold API
  keys), no inherited file descriptors, stdin from /dev/null, a new session;
* **limits**: hard rlimits (CPU seconds, address space, file size, processes, open files, no
  core dumps) set before the program's first line; a wall-clock timeout after which the
  sandbox's init is killed, which makes the kernel kill *every* process of its pid namespace
  (setsid daemons and fork-bomb children included) before ``run_program`` returns; the whole
  sandbox dies with its parent;
* **seccomp** (extra layer, ``_sandbox_seccomp.py``): no new processes, no namespace, mount,
  ptrace, bpf, keyring, io_uring ... syscalls, sockets only AF_UNIX/INET/INET6.

Two mechanisms build the same wall (same mounts, rendered from one description):

* ``bwrap`` (bubblewrap), used when it is on PATH; starts in a few milliseconds;
* ``launcher`` (``_sandbox_launch.py``), the fallback on the kernel's own primitives:
  ``unshare(2)``, ``mount(2)`` and ``pivot_root(2)`` through ctypes, in the same three-process
  shape as bubblewrap (outer process, pid 1, program). It needs unprivileged user namespaces.

``isolation()`` reports which mechanism is used (probed once, by really running a tiny program
in it, then cached). When neither works, ``run_program`` raises ``SandboxUnavailable`` unless the
caller opts in with ``allow_unisolated=True``: then the program runs the old way (a plain child
process with rlimits, the audit hook and, when ``unshare -n`` works, an empty network namespace),
which is not a security boundary. Inside the sandbox the audit hook of ``_sandbox_child.py`` stays
on as an extra layer only.

When the caller is root, the sandbox's processes are host uid 0 outside their namespaces (as
bubblewrap maps them); they hold no capability, see nothing writable but their tmpfs (``/proc``,
whose ``sys`` and ``sysrq-trigger`` files root could otherwise write, is read-only), and seccomp
keeps them from creating processes (the kernel does not enforce ``RLIMIT_NPROC`` for root).
"""

from __future__ import annotations

import functools
import json
import marshal
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from . import _sandbox_layout as layout
from ._sandbox_seccomp import build_filter as _build_filter

CHILD = Path(__file__).with_name("_sandbox_child.py")
LAUNCHER = Path(__file__).with_name("_sandbox_launch.py")
MECHANISMS = ("bwrap", "launcher")
SANDBOX_UID = SANDBOX_GID = 65534
HOSTNAME = "sandbox"
# What the program sees: nothing of the caller's environment.
PROGRAM_ENV = {"PATH": "/usr/bin:/bin", "HOME": layout.WORKDIR, "TMPDIR": layout.WORKDIR,
               "LANG": "C.UTF-8", "PYTHONHASHSEED": "0", "TZ": "UTC"}
# What bwrap / the launcher run with (readable as /proc/1/environ inside): nothing either.
WRAPPER_ENV = {"PATH": "/usr/bin:/bin:/usr/sbin:/sbin", "LANG": "C.UTF-8"}
STDERR_TAIL, STDOUT_TAIL = 2000, 1 << 16
_PROBE = """\
import errno, os
assert os.getpid() == 2 and os.getuid() == 65534, (os.getpid(), os.getuid())
try:
    os.mkdir('/probe')
except OSError as e:
    assert e.errno in (errno.EROFS, errno.EACCES, errno.EPERM), e
else:
    raise SystemExit('the root is writable')
status = open('/proc/self/status').read()
assert 'CapEff:\\t0000000000000000' in status, status
want = {want!r}
assert ('Seccomp:\\t2' in status) == want, status
"""


class SandboxUnavailable(RuntimeError):
    """This host cannot isolate generated code (no bubblewrap, no user namespaces)."""


@dataclass(frozen=True)
class Isolation:
    """Which mechanism isolates programs here. ``mechanism``: ``bwrap``, ``launcher`` or
    ``none``; ``detail``: the probe's findings (why a preferred mechanism is unusable);
    ``layers``: what a default ``run_program`` applies."""

    mechanism: str
    detail: str = ""
    seccomp: bool = False
    layers: tuple[str, ...] = field(default=())

    @property
    def isolated(self) -> bool:
        return self.mechanism != "none"

    def describe(self) -> str:
        """One line for reports and ``fedllm doctor``."""
        if not self.isolated:
            return f"none (unisolated): {self.detail}"
        return f"{self.mechanism}: " + " + ".join(self.layers)


@dataclass
class Result:
    status: str  # passed | failed | timeout
    returncode: int | None
    seconds: float
    stderr: str
    stdout: str = ""

    @property
    def passed(self) -> bool:
        return self.status == "passed"


# ------------------------------------------------------------------------------ probing
_probe_lock = threading.Lock()
_probed: dict[str, str] = {}


def _layers(seccomp: bool) -> tuple[str, ...]:
    names = ["user/mount/pid/net/ipc/uts/cgroup namespaces", "read-only root view",
             "private /tmp tmpfs", "rlimits", "tree killed at timeout"]
    return tuple(names + (["seccomp"] if seccomp else []) + ["audit hook"])


def _mechanism_problem(mechanism: str) -> str:
    """Why ``mechanism`` cannot isolate here ('' when it can), by running the probe program in
    it once per process (a few tens of milliseconds)."""
    with _probe_lock:
        if mechanism not in _probed:
            _probed[mechanism] = _probe(mechanism)
        return _probed[mechanism]


def _probe(mechanism: str) -> str:
    if not sys.platform.startswith("linux"):
        return f"{mechanism}: needs Linux namespaces (this is {sys.platform})"
    if mechanism == "bwrap" and not _bwrap():
        return "bwrap: not on PATH (apt-get install bubblewrap)"
    try:
        filt = build_filter()
        r = _run_isolated(_PROBE.format(want=filt is not None), mechanism,
                          limits=_limits(30, 512, None, 16, 32, 64, (), audit_hook=False),
                          timeout=30, tmp_bytes=1 << 20, seccomp=True)
    except (OSError, subprocess.SubprocessError, ValueError) as e:
        return f"{mechanism}: {e}"
    if not r.passed:
        why = (r.stderr.strip().splitlines() or [f"exit status {r.returncode}"])[-1]
        return f"{mechanism}: probe failed ({why})"
    return ""


def isolation(mechanism: str = "auto") -> Isolation:
    """The isolation ``run_program(mechanism=...)`` uses: for ``auto``, bubblewrap if it works,
    else the launcher, else ``none``. Probed once per process, then cached (cheap)."""
    names = MECHANISMS if mechanism == "auto" else (mechanism,)
    if mechanism != "auto" and mechanism not in MECHANISMS:
        raise ValueError(f"mechanism must be 'auto' or one of {MECHANISMS}, not {mechanism!r}")
    problems: list[str] = []
    for name in names:
        problem = _mechanism_problem(name)
        if not problem:
            seccomp = build_filter() is not None
            return Isolation(name, detail="; ".join(problems), seccomp=seccomp,
                             layers=_layers(seccomp))
        problems.append(problem)
    return Isolation("none", detail="; ".join(problems))


def _unavailable(iso: Isolation) -> SandboxUnavailable:
    return SandboxUnavailable(
        "cannot isolate generated code on this host: " + iso.detail + ". Install bubblewrap "
        "(apt-get install bubblewrap) or enable unprivileged user namespaces "
        "(sysctl user.max_user_namespaces > 0, kernel.unprivileged_userns_clone=1 on Debian, "
        "kernel.apparmor_restrict_unprivileged_userns=0 on Ubuntu); or, "
        "knowing that the code then runs with only rlimits and an audit hook, opt in with "
        "run_program(..., allow_unisolated=True) (humaneval: "
        "unsafe_allow_unisolated_execution: true)")


@functools.lru_cache(maxsize=1)
def build_filter() -> bytes | None:
    """This host's seccomp filter (built once)."""
    return _build_filter()


@functools.lru_cache(maxsize=1)
def _bwrap() -> str | None:
    return shutil.which("bwrap")


@functools.lru_cache(maxsize=1)
def _bwrap_options() -> frozenset[str]:
    """The options this bubblewrap knows (--disable-userns and --size are recent)."""
    out = subprocess.run([_bwrap() or "bwrap", "--help"], capture_output=True, text=True,
                         timeout=10, check=False)
    return frozenset(w for w in (out.stdout + out.stderr).split() if w.startswith("--"))


@functools.lru_cache(maxsize=1)
def network_isolation() -> list[str]:
    """Legacy (unisolated runs only): the command prefix that gives a child an empty network
    namespace, or [] if none works here. Isolated runs always have one; see ``isolation()``."""
    exe = shutil.which("unshare")
    if not exe:
        return []
    for prefix in ([exe, "-n"], [exe, "-r", "-n"]):
        try:
            ok = subprocess.run([*prefix, "true"], capture_output=True, timeout=10,
                                check=False).returncode == 0
        except (OSError, subprocess.SubprocessError):
            ok = False
        if ok:
            return prefix
    return []


# ------------------------------------------------------------------------------ running
def _limits(cpu: float, memory_mb: int, cpu_seconds: int | None, max_file_mb: int,
            max_processes: int, max_open_files: int, deny, *, audit_hook: bool) -> list[str]:
    """The child's rlimits and hook settings as its ``key=value`` arguments (see
    ``_sandbox_child.py``)."""
    settings = {"cpu": int(cpu_seconds or (int(cpu) + 1)), "memory": int(memory_mb) * 2**20,
                "fsize": int(max_file_mb) * 2**20, "nproc": int(max_processes),
                "nofile": int(max_open_files), "audit_hook": int(bool(audit_hook))}
    return [f"{k}={v}" for k, v in settings.items()] + \
        [f"deny={Path(d).resolve()}" for d in deny]


def run_program(source: str, *, timeout: float = 10.0, memory_mb: int = 2048,
                cpu_seconds: int | None = None, max_file_mb: int = 16,
                deny: Sequence[str | os.PathLike] = (), network_namespace: bool = True,
                allow_unisolated: bool = False, mechanism: str = "auto",
                audit_hook: bool = True, seccomp: bool = True, tmp_mb: int = 64,
                max_processes: int = 32, max_open_files: int = 64) -> Result:
    """Run ``source`` in a fresh sandbox; ``passed`` iff it exits 0 within ``timeout``.

    Raises ``SandboxUnavailable`` when the host cannot isolate it, unless ``allow_unisolated``.
    ``mechanism`` forces ``bwrap`` or ``launcher``; ``audit_hook=False`` / ``seccomp=False``
    leave out an extra layer (the tests do, to show the namespaces hold on their own).
    ``network_namespace`` only matters for unisolated runs (isolated ones always have an empty
    one); ``deny`` (paths the audit hook refuses) is mostly redundant now: the run directory is
    not in the sandbox's view at all.
    """
    limits = _limits(timeout, memory_mb, cpu_seconds, max_file_mb, max_processes,
                     max_open_files, deny, audit_hook=audit_hook)
    iso = isolation(mechanism)
    if not iso.isolated:
        if not allow_unisolated:
            raise _unavailable(iso)
        _warn_unisolated(iso)
        return _run_unisolated(source, limits, timeout, network_namespace)
    return _run_isolated(source, iso.mechanism, limits=limits, timeout=timeout,
                         tmp_bytes=int(tmp_mb) * 2**20, seccomp=seccomp)


@functools.lru_cache(maxsize=1)
def _warn_unisolated(iso: Isolation) -> None:
    warnings.warn("fedllm sandbox: running generated code WITHOUT kernel isolation "
                  f"(allow_unisolated=True): {iso.detail}", RuntimeWarning, stacklevel=3)


def _bwrap_argv(ops: list[layout.Op], argv: list[str], *, info_fd: int,
                seccomp_fd: int | None) -> list[str]:
    """bubblewrap's command line for the view ``ops`` and the program ``argv``."""
    known = _bwrap_options()
    cmd = [_bwrap(), "--unshare-user", "--unshare-pid", "--unshare-net", "--unshare-ipc",
           "--unshare-uts", "--unshare-cgroup-try", "--uid", str(SANDBOX_UID), "--gid",
           str(SANDBOX_GID), "--hostname", HOSTNAME, "--die-with-parent", "--new-session",
           "--clearenv"]
    if "--disable-userns" in known:
        cmd.append("--disable-userns")
    if os.geteuid() == 0:
        cmd += ["--cap-drop", "ALL"]  # as root bwrap would otherwise keep the bounding set
    for k, v in PROGRAM_ENV.items():
        cmd += ["--setenv", k, v]
    for op in ops:
        if op.kind == "ro-bind":
            cmd += ["--ro-bind", op.src, op.dest]
        elif op.kind == "dev-bind":
            cmd += ["--dev-bind", op.src, op.dest]
        elif op.kind == "symlink":
            cmd += ["--symlink", op.src, op.dest]
        elif op.kind == "proc":
            cmd += ["--proc", op.dest]
        elif op.kind == "mask":
            cmd += ["--ro-bind", "/dev/null", op.dest]
        elif op.kind == "tmpfs":
            cmd += (["--size", str(op.size)] if "--size" in known else []) + ["--tmpfs", op.dest]
        elif op.kind == "data":
            cmd += ["--ro-bind-data", op.src, op.dest]
        elif op.kind == "remount-ro":
            cmd += ["--remount-ro", op.dest]
        else:
            raise ValueError(f"unknown view op {op.kind}")
    cmd += ["--chdir", layout.WORKDIR, "--info-fd", str(info_fd)]
    if seccomp_fd is not None:
        cmd += ["--seccomp", str(seccomp_fd)]
    return [str(c) for c in cmd] + ["--", *argv]


def _launcher_argv(python: str, ops: list[layout.Op], argv: list[str], *, status_fd: int,
                   seccomp: bytes | None) -> list[str]:
    """The fallback launcher's command line: the whole plan as one marshal-ed, hex-encoded
    argument (marshal is built in; json would cost the launcher ~13 ms of imports)."""
    spec = {"ops": [[op.kind, op.dest, op.src, op.size] for op in ops], "argv": argv,
            "env": PROGRAM_ENV, "cwd": layout.WORKDIR, "hostname": HOSTNAME,
            "uid": SANDBOX_UID, "gid": SANDBOX_GID, "status_fd": status_fd,
            "seccomp": seccomp.hex() if seccomp else "", "parent": os.getpid()}
    return [python, "-I", "-S", "-B", str(LAUNCHER), marshal.dumps(spec).hex()]


def _read_init_pid(fd: int, deadline: float) -> int | None:
    """The host pid of the sandbox's init from the status pipe (bwrap's --info-fd JSON or the
    launcher's), or None if the wrapper failed before reporting it."""
    buf = b""
    while True:
        left = deadline - time.perf_counter()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            return None
        chunk = os.read(fd, 4096)
        if not chunk:
            return None
        buf += chunk
        try:
            pid = json.loads(buf).get("child-pid")
        except ValueError:
            continue  # incomplete JSON so far
        return int(pid) if isinstance(pid, int) else None


def _open_pidfd(pid: int | None) -> int | None:
    """A pidfd for the sandbox's init, so that killing it can never hit a recycled pid."""
    if pid is None or not hasattr(os, "pidfd_open"):
        return None
    try:
        return os.pidfd_open(pid)
    except OSError:
        return None  # already gone


def _kill_sandbox(proc: subprocess.Popen, pidfd: int | None) -> None:
    """Kill the sandbox's init, which makes the kernel kill every process of its pid namespace,
    and wait until it is gone; kill and reap the wrapper too if it is still running.

    Done after every run, not only at the timeout: bubblewrap's init keeps reaping while any
    process of the namespace is left (a setsid daemon), although bwrap itself has returned."""
    if pidfd is not None:
        try:
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
        except OSError:
            pass  # already exited
    if proc.returncode is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # not reaped yet, so the pid is not reused
        except (ProcessLookupError, PermissionError):
            pass
        proc.wait()
    if pidfd is not None:
        # readable once init has exited, which it does only after every other process of its
        # pid namespace has (the kernel's zap_pid_ns_processes waits for them)
        select.select([pidfd], [], [], 10)


def _tail(f: IO[bytes], n: int) -> str:
    f.seek(0, os.SEEK_END)
    f.seek(max(0, f.tell() - n))
    return f.read().decode("utf-8", "replace")


def _status(rc: int | None) -> tuple[str, int | None]:
    """(status, returncode) from the wrapper's exit code, whose 128 + N means signal N."""
    if rc is None:
        return "timeout", None
    if 128 < rc < 128 + 65:
        rc = -(rc - 128)
    if rc == -signal.SIGXCPU:
        return "timeout", rc
    return ("passed" if rc == 0 else "failed"), rc


def _wait(proc: subprocess.Popen, deadline: float) -> int | None:
    """The wrapper's exit status, or None at the deadline. Waits on a pidfd: Popen.wait with a
    timeout polls with sleeps of up to 50 ms, which would be most of a short program's cost."""
    try:
        fd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):
        fd = None
    try:
        if fd is not None:
            select.select([fd], [], [], max(0.0, deadline - time.perf_counter()))
            return proc.poll()
        return proc.wait(timeout=max(0.0, deadline - time.perf_counter()))
    except subprocess.TimeoutExpired:
        return None
    finally:
        if fd is not None:
            os.close(fd)


def _wrapper_command(mechanism: str, python: str, ops: list[layout.Op], argv: list[str],
                     status_fd: int, filt: bytes | None, child_fds: list[int]) -> list[str]:
    """bwrap's or the launcher's command line; fds the wrapper must inherit go to child_fds."""
    if mechanism == "launcher":
        return _launcher_argv(python, ops, argv, status_fd=status_fd, seccomp=filt)
    seccomp_fd = None
    if filt:
        seccomp_fd, w = os.pipe()
        child_fds.append(seccomp_fd)
        os.write(w, filt)  # a few hundred bytes: fits the pipe buffer
        os.close(w)
    return _bwrap_argv(ops, argv, info_fd=status_fd, seccomp_fd=seccomp_fd)


def _run_isolated(source: str, mechanism: str, *, limits: list[str], timeout: float,
                  tmp_bytes: int, seccomp: bool) -> Result:
    """One program in a fresh sandbox built by ``mechanism``."""
    python = layout.interpreter()
    filt = build_filter() if seccomp else None
    argv = [python, "-I", "-S", "-B", layout.CHILD_PATH, layout.PROGRAM_PATH, layout.WORKDIR,
            *limits]
    with tempfile.TemporaryFile() as src, tempfile.TemporaryFile() as out, \
            tempfile.TemporaryFile() as err:
        src.write(source.encode("utf-8", "surrogateescape"))
        src.flush()
        src.seek(0)
        ops = layout.view(python, str(CHILD), program_fd=src.fileno(), tmp_bytes=tmp_bytes)
        status_r, status_w = os.pipe()
        child_fds = [status_w]
        proc, pidfd = None, None
        try:
            cmd = _wrapper_command(mechanism, python, ops, argv, status_w, filt, child_fds)
            t0 = time.perf_counter()
            deadline = t0 + timeout
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                    env=WRAPPER_ENV, cwd="/", start_new_session=True,
                                    pass_fds=(src.fileno(), *child_fds))
            for fd in child_fds:
                os.close(fd)
            child_fds = []
            pidfd = _open_pidfd(_read_init_pid(status_r, deadline))
            rc = _wait(proc, deadline)
            seconds = time.perf_counter() - t0
        finally:
            for fd in child_fds:
                os.close(fd)
            if proc is not None:
                _kill_sandbox(proc, pidfd)  # whatever the program left behind goes with it
            os.close(status_r)
            if pidfd is not None:
                os.close(pidfd)
        status, rc = _status(rc)
        return Result(status, rc, seconds, _tail(err, STDERR_TAIL), _tail(out, STDOUT_TAIL))


def _run_unisolated(source: str, limits: list[str], timeout: float,
                    network_namespace: bool) -> Result:
    """The old, unisolated way (explicit opt-in only): a plain child process in a throw-away
    host directory with rlimits, the audit hook and, when possible, an empty network namespace.
    A setsid grandchild can outlive it; nothing stops reads of the host's files."""
    work = Path(tempfile.mkdtemp(prefix="fedllm-sandbox-"))
    try:
        prog = work / "program.py"
        prog.write_text(source, encoding="utf-8")
        cmd = [sys.executable, "-I", "-S", "-B", str(CHILD), str(prog), str(work), *limits]
        if network_namespace:
            cmd = network_isolation() + cmd
        env = {**PROGRAM_ENV, "HOME": str(work), "TMPDIR": str(work)}
        t0 = time.perf_counter()
        with open(work / "stdout", "w+b") as out, open(work / "stderr", "w+b") as err:
            proc = subprocess.Popen(cmd, cwd=work, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=err, start_new_session=True)
            try:
                rc = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                rc = None
            finally:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)  # the whole group, whatever it did
                except ProcessLookupError:
                    pass
                proc.wait()
            status, rc = _status(rc if rc is None or rc >= 0 else 128 - rc)
            return Result(status, rc, time.perf_counter() - t0, _tail(err, STDERR_TAIL),
                          _tail(out, STDOUT_TAIL))
    finally:
        shutil.rmtree(work, ignore_errors=True)
