"""The sandbox's filesystem, described once as an ordered list of mount operations and rendered
by both mechanisms (bubblewrap arguments, or the fallback launcher's mount syscalls), so that
both build exactly the same view (stdlib only).

The view is a fresh tmpfs root, read-only once built, holding only:

* the interpreter binary and the directories of its ``-I -S`` ``sys.path`` (stdlib, its zip,
  lib-dynload) and its ``LIBDIR``, read-only, at their host paths (the interpreter finds its
  prefix from its own location, so the paths must not move);
* the system library directories the dynamic loader needs (``/usr/lib*``, ``/lib*`` as the
  host's symlinks or read-only binds) and ``/etc/ld.so.cache``/``ld.so.conf*``; nothing else of
  ``/etc`` (no passwd, no hosts), no ``/home``, ``/root`` (beyond the interpreter's own files
  when it lives there), ``/work``, ``/usr/bin`` (so no shell), ``/sys``;
* ``/dev`` with null, zero, urandom only; a fresh ``/proc`` for the new pid namespace, mounted
  read-only with its kernel-wide files that leak host state masked;
* ``/sandbox``: the bootstrap and the program, read-only;
* ``/tmp``: a size-capped tmpfs, the only writable place (the program's cwd, HOME, TMPDIR).
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from dataclasses import dataclass

SANDBOX_DIR = "/sandbox"
CHILD_PATH = SANDBOX_DIR + "/child.py"
PROGRAM_PATH = SANDBOX_DIR + "/program.py"
WORKDIR = "/tmp"
DEVICES = ("null", "zero", "urandom")
# Files of a fresh /proc that show host-wide state (kernel memory, keyrings of the mapped user,
# timers and scheduler state of every host task): covered with /dev/null.
PROC_MASKS = ("kcore", "kmsg", "keys", "key-users", "timer_list", "sched_debug", "latency_stats")
_SYSTEM_LIB_DIRS = ("/usr/lib", "/usr/lib64", "/usr/lib32", "/usr/libx32")
_TOP_LIB_DIRS = ("/lib", "/lib64", "/lib32", "/libx32")
_LOADER_FILES = ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d")


@dataclass(frozen=True)
class Op:
    """One step of building the view. kinds: ``ro-bind`` (src host path -> dest), ``dev-bind``
    (a device node), ``symlink`` (dest -> src as link text), ``proc`` (fresh procfs at dest),
    ``mask`` (/dev/null over dest), ``tmpfs`` (writable, ``size`` bytes), ``data`` (a read-only
    file with the content of the inherited file descriptor ``src``), ``remount-ro`` (dest)."""

    kind: str
    dest: str
    src: str = ""
    size: int = 0


def interpreter() -> str:
    """The real interpreter binary (a venv's ``python`` is a symlink to it; the child runs it
    with ``-I -S``, so the venv and its site-packages are not needed)."""
    return os.path.realpath(sys.executable)


@functools.lru_cache(maxsize=4)
def interpreter_paths(python: str) -> tuple[str, ...]:
    """What ``python -I -S`` imports from: its sys.path entries and LIBDIR, as the interpreter
    itself reports them (asked once per process; ~20 ms)."""
    code = ("import json, sys, sysconfig; "
            "print(json.dumps([sys.path, sysconfig.get_config_var('LIBDIR') or '']))")
    out = subprocess.run([python, "-I", "-S", "-c", code], capture_output=True, text=True,
                         timeout=60, env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
                         check=True).stdout
    path, libdir = json.loads(out)
    return tuple(p for p in [*path, libdir] if p and os.path.exists(p))


def _covered(path: str, binds: list[str]) -> bool:
    return any(path == b or path.startswith(b.rstrip("/") + "/") for b in binds)


@functools.lru_cache(maxsize=4)
def system_view(python: str, child: str) -> tuple[Op, ...]:
    """The static part of the view for ``python`` and the bootstrap file ``child``."""
    binds: list[str] = []
    ops: list[Op] = []

    def bind(src: str, dest: str | None = None) -> None:
        dest = dest or src
        if not _covered(dest, binds):
            binds.append(dest)
            ops.append(Op("ro-bind", dest, os.path.realpath(src)))

    for d in _SYSTEM_LIB_DIRS:
        if os.path.isdir(d) and not os.path.islink(d):
            bind(d)
    for d in _TOP_LIB_DIRS:
        if os.path.islink(d):
            ops.append(Op("symlink", d, os.readlink(d)))
        elif os.path.isdir(d):
            bind(d)
    for f in _LOADER_FILES:
        if os.path.exists(f):
            bind(f)
    bind(python)
    for p in sorted(interpreter_paths(python), key=len):
        bind(p)
    ops += [Op("dev-bind", f"/dev/{d}", f"/dev/{d}") for d in DEVICES
            if os.path.exists(f"/dev/{d}")]
    ops += [Op("symlink", "/dev/fd", "/proc/self/fd")]
    ops += [Op("symlink", f"/dev/{n}", f"/proc/self/fd/{i}")
            for i, n in enumerate(("stdin", "stdout", "stderr"))]
    ops.append(Op("proc", "/proc"))
    ops += [Op("mask", f"/proc/{m}") for m in PROC_MASKS if os.path.exists(f"/proc/{m}")]
    ops.append(Op("remount-ro", "/proc"))
    ops.append(Op("ro-bind", CHILD_PATH, os.path.realpath(child)))
    return tuple(ops)


def view(python: str, child: str, *, program_fd: int, tmp_bytes: int) -> list[Op]:
    """The whole view of one run: the system part, the program (read from ``program_fd``), the
    writable ``/tmp`` tmpfs, then the root made read-only."""
    return [*system_view(python, child), Op("data", PROGRAM_PATH, str(program_fd)),
            Op("tmpfs", WORKDIR, size=tmp_bytes), Op("remount-ro", "/")]
