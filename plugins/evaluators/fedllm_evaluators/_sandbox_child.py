"""Runs inside the sandbox's child interpreter (``python -I -S``), never imported by fedllm.

Order matters: first the resource limits (hard = soft, so the program cannot raise them), then
an audit hook (PEP 578, which cannot be removed once added) that refuses writes outside the
working directory, any access to the denied paths, sockets, subprocesses, forks, signals to
other processes and ctypes; only then is the untrusted program compiled and run.
argv: program path, working dir, JSON {"cpu": s, "memory": bytes, "fsize": bytes, "deny": []}.
"""

import json
import os
import resource
import sys

prog, root, limits = sys.argv[1], os.path.realpath(sys.argv[2]), json.loads(sys.argv[3])
for what, value in ((resource.RLIMIT_CPU, limits["cpu"]), (resource.RLIMIT_AS, limits["memory"]),
                    (resource.RLIMIT_FSIZE, limits["fsize"]), (resource.RLIMIT_CORE, 0)):
    resource.setrlimit(what, (value, value))
DENY = [os.path.realpath(p) for p in limits["deny"]]
with open(prog, encoding="utf-8") as f:
    SOURCE = f.read()

_realpath, _join, _isabs, _fspath = os.path.realpath, os.path.join, os.path.isabs, os.fspath
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
_BLOCKED = {"socket.__new__", "socket.connect", "socket.bind", "socket.getaddrinfo",
            "socket.sendto", "socket.sendmsg", "subprocess.Popen", "os.system", "os.exec",
            "os.posix_spawn", "os.spawn", "os.fork", "os.forkpty", "pty.spawn", "ctypes.dlopen",
            "ctypes.dlsym", "ctypes.cdata", "ctypes.call_function", "os.startfile", "os.setuid"}
_PATH_WRITES = {"os.remove", "os.rmdir", "os.rename", "os.replace", "os.link", "os.symlink",
                "os.chmod", "os.chown", "os.truncate", "os.mkdir", "shutil.rmtree", "os.utime",
                "shutil.copyfile", "shutil.move"}


def _resolve(p):
    if isinstance(p, int):
        return None
    p = _fspath(p)
    if isinstance(p, bytes):
        p = p.decode("utf-8", "replace")
    return _realpath(p if _isabs(p) else _join(os.getcwd(), p))


def _inside(path, base):
    return path == base or path.startswith(base + os.sep)


def _check_denied(p):
    if p is not None and any(_inside(p, d) for d in DENY):
        raise PermissionError(f"sandbox: access to {p!r} is denied")


def _check_write(p):
    if p is not None and not _inside(p, root):
        raise PermissionError(f"sandbox: writing {p!r} (outside the working directory) is "
                              "denied")


def _hook(event, args):
    if event in _BLOCKED:
        raise PermissionError(f"sandbox: {event} is not allowed")
    if event == "open":
        path, mode, flags = (list(args) + [None, None])[:3]
        p = _resolve(path)
        _check_denied(p)
        writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or \
            (mode is None and isinstance(flags, int) and flags & _WRITE_FLAGS)
        if writing:
            _check_write(p)
    elif event in _PATH_WRITES:
        for a in args[:2]:
            if isinstance(a, (str, bytes, os.PathLike)):
                _check_write(_resolve(a))
    elif event in ("os.listdir", "os.scandir", "os.chdir"):
        if args and isinstance(args[0], (str, bytes, os.PathLike)):
            _check_denied(_resolve(args[0]))
    elif event == "os.kill" and args and args[0] != os.getpid():
        raise PermissionError("sandbox: signalling other processes is not allowed")


sys.addaudithook(_hook)
del limits
exec(compile(SOURCE, "program.py", "exec"), {"__name__": "__main__", "__builtins__": __builtins__})
