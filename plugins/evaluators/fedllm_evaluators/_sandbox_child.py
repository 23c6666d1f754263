"""Bootstrap that runs the untrusted program inside the sandbox's interpreter
(``python -I -S -B``); stdlib only, never imported by fedllm.

argv: program path, writable directory, then settings as ``key=value`` (``cpu`` seconds,
``memory`` and ``fsize`` bytes, ``nproc``, ``nofile``, ``audit_hook`` 0/1, and one ``deny=PATH``
per denied path). Plain arguments, not JSON: importing json (and with it re, enum) would add
~13 ms to every program's start.

Order matters, and everything happens before the first line of the program runs:

1. close every inherited file descriptor above stderr (whatever the wrappers left open);
2. resource limits the program cannot raise (hard = soft, CPU: +1 s): CPU seconds, address space,
   file size, processes, open files, no core dumps;
3. optionally a PEP 578 audit hook. It is an extra layer only: the wall is the kernel isolation
   built around this process (namespaces, read-only root, seccomp; see ``sandbox.py``). It
   refuses sockets, subprocesses, forks, ctypes, writes outside the writable directory, access
   to denied paths, signals to other processes, and the introspection that could reach it.
   Unlike the first version it reads no module globals of its own (what it uses is bound in
   its closure, so rebinding names in ``sys.modules['__main__']`` changes nothing), and it
   refuses to replace any function's ``__code__``/``__defaults__``, the garbage collector's
   object walks and tracing hooks. It still cannot be airtight: the stdlib functions it calls
   (``os.path.realpath``) live in modules a program can patch, a path object's ``__fspath__``
   runs program code, and ``open`` events carry no ``dir_fd`` — which is why it is not the wall;
4. the program runs as a fresh ``__main__`` module; this bootstrap's names are deleted.
"""

import os
import resource
import sys


def close_inherited_fds() -> None:
    """No descriptor of the launcher or bubblewrap (status pipes, data files) reaches the
    program; 0-2 stay (stdin is /dev/null, stdout/stderr go to the caller's capture files)."""
    os.closerange(3, 1 << 16)


def parse_settings(args: list) -> dict:
    """``key=value`` arguments to a dict; ``deny`` collects a list of paths."""
    settings: dict = {"deny": []}
    for arg in args:
        key, _, value = arg.partition("=")
        if key == "deny":
            settings["deny"].append(value)
        else:
            settings[key] = int(value)
    return settings


def apply_limits(limits: dict) -> None:
    """Hard limits equal to soft ones: the program may lower them but never raise them. CPU is
    the exception: the hard limit is one second above, so that the kernel first sends SIGXCPU
    (reported as a timeout) and SIGKILL only to a program that ignores it."""
    resource.setrlimit(resource.RLIMIT_CPU, (limits["cpu"], limits["cpu"] + 1))
    for what, value in ((resource.RLIMIT_AS, limits["memory"]),
                        (resource.RLIMIT_FSIZE, limits["fsize"]),
                        (resource.RLIMIT_NPROC, limits["nproc"]),
                        (resource.RLIMIT_NOFILE, limits["nofile"]),
                        (resource.RLIMIT_CORE, 0)):
        resource.setrlimit(what, (value, value))


def make_audit_hook(root: str, deny: tuple) -> object:
    """The audit hook, closed over the names it uses (builtins included), so that rebinding
    globals of any ``__main__`` module does not change it (see the module docstring for what
    it still cannot guard against)."""
    realpath, join, isabs, fspath, getcwd = (os.path.realpath, os.path.join, os.path.isabs,
                                             os.fspath, os.getcwd)
    readlink, getpid, sep = os.readlink, os.getpid, os.sep
    _isinstance, _str, _bytes, _int, _type, _tuple = isinstance, str, bytes, int, type, tuple
    _PathLike, _PermissionError, _any, _list, _len = os.PathLike, PermissionError, any, list, len
    _enumerate = enumerate
    function_type = _type(make_audit_hook)
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
    blocked = frozenset({
        "socket.__new__", "socket.connect", "socket.bind", "socket.getaddrinfo",
        "socket.sendto", "socket.sendmsg", "subprocess.Popen", "os.system", "os.exec",
        "os.posix_spawn", "os.spawn", "os.fork", "os.forkpty", "pty.spawn", "ctypes.dlopen",
        "ctypes.dlsym", "ctypes.cdata", "ctypes.call_function", "ctypes.addressof",
        "os.startfile", "os.setuid", "gc.get_objects", "gc.get_referrers",
        "gc.get_referents", "sys.settrace", "sys.setprofile", "sys._current_frames",
        "sys.remote_exec", "cpython.remove_audit_hooks"})
    path_writes = frozenset({
        "os.remove", "os.rmdir", "os.rename", "os.replace", "os.link", "os.symlink",
        "os.chmod", "os.chown", "os.truncate", "os.mkdir", "shutil.rmtree", "os.utime",
        "shutil.copyfile", "shutil.move", "os.setxattr", "os.removexattr", "os.chflags",
        "sqlite3.connect", "os.mkfifo", "os.mknod"})
    # event -> for its 1st and 2nd path argument, the index of the dir_fd argument it is
    # relative to (the audit events carry dir_fd; "open" does not, hence the kernel wall).
    dir_fd_index = {"os.remove": (1,), "os.rmdir": (1,), "os.rename": (2, 3),
                    "os.replace": (2, 3), "os.link": (2, 3), "os.symlink": (None, 2),
                    "os.chmod": (2,), "os.chown": (3,), "os.mkdir": (2,), "os.utime": (3,),
                    "os.mkfifo": (2,), "os.mknod": (3,)}
    path_reads = frozenset({"os.listdir", "os.scandir", "os.chdir", "os.getxattr",
                            "os.listxattr", "glob.glob", "os.walk"})
    frozen_attrs = frozenset({"__code__", "__defaults__", "__kwdefaults__", "__globals__",
                              "__closure__"})
    denied = _tuple(deny)

    def resolve(p, dir_fd=None):
        if p is None or _isinstance(p, _int):
            return None
        p = fspath(p)
        if _isinstance(p, _bytes):
            p = p.decode("utf-8", "surrogateescape")
        if not isabs(p):
            base = getcwd()
            if _isinstance(dir_fd, _int) and dir_fd >= 0:
                base = readlink(f"/proc/{getpid()}/fd/{dir_fd}")
            p = join(base, p)
        return realpath(p)

    def inside(path, base):
        return path == base or path.startswith(base.rstrip(sep) + sep)

    def check_denied(p):
        if p is not None and _any(inside(p, d) for d in denied):
            raise _PermissionError(f"sandbox: access to {p!r} is denied")

    def check_write(p):
        if p is not None and not inside(p, root):
            raise _PermissionError(f"sandbox: writing {p!r} (outside the working directory) "
                                   "is denied")

    def dir_fd_of(event, args, i):
        where = dir_fd_index.get(event, ())
        j = where[i] if i < _len(where) else None
        return args[j] if j is not None and j < _len(args) else None

    def hook(event, args):
        if event in blocked:
            raise _PermissionError(f"sandbox: {event} is not allowed")
        if event == "open":
            path, mode, flags = (_list(args) + [None, None])[:3]
            p = resolve(path)
            check_denied(p)
            writing = (_isinstance(mode, _str) and _any(c in mode for c in "wax+")) or \
                (mode is None and _isinstance(flags, _int) and flags & write_flags)
            if writing:
                check_write(p)
        elif event in path_writes:
            for i, a in _enumerate(args[:2]):
                if _isinstance(a, (_str, _bytes, _PathLike)):
                    p = resolve(a, dir_fd_of(event, args, i))
                    check_denied(p)
                    check_write(p)
        elif event in path_reads:
            if args and _isinstance(args[0], (_str, _bytes, _PathLike)):
                check_denied(resolve(args[0]))
        elif (event == "os.kill" and args and args[0] != getpid()) or \
                event in ("os.killpg", "signal.pthread_kill"):
            raise _PermissionError("sandbox: signalling other processes is not allowed")
        elif event == "object.__setattr__" and len(args) >= 2 and \
                _type(args[0]) is function_type and args[1] in frozen_attrs:
            raise _PermissionError(f"sandbox: replacing a function's {args[1]} is not allowed")

    return hook


def run_as_main(source: str, filename: str) -> None:
    """Run the program as a brand-new ``__main__`` module (not this bootstrap's)."""
    main = type(sys)("__main__")
    main.__dict__["__builtins__"] = __builtins__
    sys.modules["__main__"] = main
    exec(compile(source, filename, "exec"), main.__dict__)  # noqa: S102 - its purpose


if __name__ == "__main__":
    close_inherited_fds()
    _prog, _root = sys.argv[1], os.path.realpath(sys.argv[2])
    _limits = parse_settings(sys.argv[3:])
    apply_limits(_limits)
    with open(_prog, encoding="utf-8") as _f:
        _source = _f.read()
    if _limits.get("audit_hook", True):
        sys.addaudithook(make_audit_hook(_root, tuple(os.path.realpath(p)  # type: ignore
                                                      for p in _limits["deny"])))
    del _f, _prog, _root, _limits, make_audit_hook, apply_limits, close_inherited_fds, \
        parse_settings
    run_as_main(_source, "program.py")
