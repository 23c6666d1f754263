"""Fallback sandbox launcher, used when bubblewrap is not installed: builds the same isolation
from the kernel's own primitives through ctypes (stdlib only; run as a script, never imported
by fedllm):  ``python -I -S -B _sandbox_launch.py SPEC`` (SPEC: the plan, marshal-ed and
hex-encoded by ``sandbox.py``; marshal is built in, json would cost ~13 ms of imports).

Three processes, as in bubblewrap:

1. the *outer* process (this script, in the caller's pid namespace) calls ``unshare(2)`` for new
   user, mount, pid, network, IPC, UTS and cgroup namespaces, maps one uid/gid (the caller's, as
   65534 inside; ``setgroups`` denied), reports the host pid of its child on the status fd
   (``{"child-pid": N}``, the JSON of ``bwrap --info-fd``) and waits for it. It dies with its parent
   (``PR_SET_PDEATHSIG``).
2. its child is *pid 1* of the new pid namespace (killing it kills every process in it). It
   sets the loopback interface up, builds the view with ``mount(2)`` (see
   ``_sandbox_layout.py``): a tmpfs base onto which the host root is ``pivot_root``-ed at
   ``/oldroot``, a fresh tmpfs ``/newroot`` filled with read-only binds from ``/oldroot``, a
   new procfs, device binds and the ``/tmp`` tmpfs; it
   forbids nested user namespaces (``user.max_user_namespaces = 0`` in the new user
   namespace), sets the hostname, then ``pivot_root(".", ".")`` into ``/newroot`` and detaches
   the host root entirely, so no path leads back to it. It then reaps zombies and exits with the
   program's status (``128 + signal`` when killed).
3. *pid 2* drops every capability from its bounding and ambient sets, sets ``no_new_privs``,
   starts a new session, installs the seccomp filter when given, closes every other fd and
   ``execve``-s the interpreter as uid 65534 with the explicit environment: execve of a non-root
   uid leaves it no capabilities at all.
"""

from __future__ import annotations

# _signal, not signal: signal's enum import would cost ~10 ms per program
import _signal
import ctypes
import marshal
import os
import select
import sys

CLONE_NEWNS, CLONE_NEWCGROUP, CLONE_NEWUTS = 0x00020000, 0x02000000, 0x04000000
CLONE_NEWIPC, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x08000000, 0x10000000, 0x20000000, \
    0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_SYNCHRONOUS, MS_MANDLOCK, MS_NOATIME, MS_NODIRATIME = 16, 64, 1024, 2048
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE, MS_RELATIME = 32, 4096, 16384, 1 << 18, 1 << 21
MNT_DETACH = 2
PR_SET_PDEATHSIG, PR_SET_SECCOMP, PR_CAPBSET_DROP = 1, 22, 24
PR_SET_NO_NEW_PRIVS, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 38, 47, 4
SECCOMP_MODE_FILTER = 2
SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "riscv64": 41, "ppc64le": 203, "ppc64": 203,
                  "s390x": 217, "armv7l": 218, "armv6l": 218, "i686": 217, "i386": 217}
# statvfs f_flag bits -> mount flags that must be kept when remounting a bind (the kernel refuses
# to clear flags locked by a more privileged mount namespace).
_KEEP_FLAGS = ((os.ST_NOSUID, MS_NOSUID), (os.ST_NODEV, MS_NODEV), (os.ST_NOEXEC, MS_NOEXEC),
               (os.ST_SYNCHRONOUS, MS_SYNCHRONOUS), (os.ST_MANDLOCK, MS_MANDLOCK),
               (os.ST_NOATIME, MS_NOATIME), (os.ST_NODIRATIME, MS_NODIRATIME),
               (os.ST_RELATIME, MS_RELATIME))
OLD, NEW = "/oldroot", "/newroot"

libc = ctypes.CDLL(None, use_errno=True)
libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                       ctypes.c_char_p]
libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
libc.unshare.argtypes = [ctypes.c_int]
libc.sethostname.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong,
                       ctypes.c_ulong]


class SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def _check(rc: int, what: str) -> None:
    """Raise OSError with errno for a failed libc call (they return -1 and set errno)."""
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _b(path: str | None) -> bytes | None:
    """A path as the bytes libc wants (None stays NULL)."""
    return None if path is None else os.fsencode(path)


def mount(src: str | None, dest: str, fstype: str | None = None, flags: int = 0,
          data: str | None = None) -> None:
    """mount(2); raises OSError."""
    _check(libc.mount(_b(src), _b(dest), _b(fstype), flags, _b(data)), f"mount {dest}")


def prctl(option: int, arg2: int = 0) -> None:
    """prctl(2) with one argument; raises OSError."""
    _check(libc.prctl(option, arg2, 0, 0, 0), f"prctl {option}")


def pivot_root(new: str, put_old: str) -> None:
    """pivot_root(2), which glibc does not wrap."""
    nr = SYS_PIVOT_ROOT.get(os.uname().machine)
    if nr is None:
        raise OSError(0, f"pivot_root: unknown syscall number on {os.uname().machine}")
    _check(libc.syscall(nr, _b(new), _b(put_old)), f"pivot_root {new}")


def write_file(path: str, text: str) -> None:
    """Write a /proc control file in one write(2)."""
    with open(path, "w") as f:
        f.write(text)


# ---------------------------------------------------------------------------------- outer
def outer(spec: dict) -> None:
    """Create the namespaces, start pid 1, report its host pid, exit with its status."""
    prctl(PR_SET_PDEATHSIG, _signal.SIGKILL)
    if os.getppid() != spec["parent"]:
        sys.exit(125)  # the caller is already gone
    uid, gid = os.getuid(), os.getgid()
    flags = CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | \
        CLONE_NEWUTS
    if libc.unshare(flags | CLONE_NEWCGROUP) != 0:
        _check(libc.unshare(flags), "unshare")
    write_file("/proc/self/setgroups", "deny")
    write_file("/proc/self/uid_map", f"{spec['uid']} {uid} 1\n")
    write_file("/proc/self/gid_map", f"{spec['gid']} {gid} 1\n")
    lifeline_r, lifeline_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(lifeline_w)
        init(spec, lifeline_r)
    os.close(lifeline_r)
    with os.fdopen(spec["status_fd"], "w") as out:
        out.write(f'{{"child-pid": {pid}}}\n')
    _, status = os.waitpid(pid, 0)
    os._exit(exit_code(status))  # no interpreter teardown: ~8 ms saved per program


def exit_code(status: int) -> int:
    """A wait status as a shell-style exit code: 128 + N when killed by signal N."""
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


# ---------------------------------------------------------------------------------- pid 1
def init(spec: dict, lifeline_r: int) -> None:
    """pid 1 of the new namespaces: build the root, start the program, reap, exit with it."""
    try:
        prctl(PR_SET_PDEATHSIG, _signal.SIGKILL)
        if select.select([lifeline_r], [], [], 0)[0]:
            os._exit(125)  # the outer process died before PDEATHSIG was armed
        os.close(lifeline_r)
        os.close(spec["status_fd"])
        _signal.signal(_signal.SIGINT, _signal.SIG_DFL)  # init ignores unhandled signals
        bring_up_loopback()
        build_root(spec["ops"])
        host = spec["hostname"].encode()
        _check(libc.sethostname(host, len(host)), "sethostname")
        pid = os.fork()
        if pid == 0:
            exec_program(spec)
    except BaseException as e:
        os.write(2, f"sandbox launcher: {e}\n".encode(errors="replace"))
        os._exit(125)
    while True:
        try:
            child, status = os.waitpid(-1, 0)
        except ChildProcessError:
            os._exit(125)
        if child == pid:
            os._exit(exit_code(status))


def bring_up_loopback() -> None:
    """Set ``lo`` up in the new, otherwise empty network namespace, as bubblewrap does, so that
    programs can use sockets among themselves (nothing else is reachable from here)."""
    import _socket
    import fcntl
    import struct
    SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
    s = _socket.socket(_socket.AF_INET, _socket.SOCK_DGRAM)
    try:
        ifreq = b"lo".ljust(16, b"\0") + bytes(24)
        flags = struct.unpack_from("H", fcntl.ioctl(s.fileno(), SIOCGIFFLAGS, ifreq), 16)[0]
        fcntl.ioctl(s.fileno(), SIOCSIFFLAGS,
                    b"lo".ljust(16, b"\0") + struct.pack("H", flags | IFF_UP) + bytes(22))
    finally:
        s.close()


def build_root(ops: list) -> None:
    """Mount the view (ops from _sandbox_layout) at /newroot and pivot into it, leaving no
    mount of the host reachable."""
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    base = "/tmp" if os.path.isdir("/tmp") else "/dev"  # any dir: the pivot detaches it from there
    mount("tmpfs", base, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0700,size=1m")
    os.mkdir(base + NEW)
    os.mkdir(base + OLD)
    pivot_root(base, base + OLD)
    os.chdir("/")
    mount("tmpfs", NEW, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=32m")
    for kind, dest, src, size in ops:
        APPLY[kind](NEW + dest if dest != "/" else NEW, src, size)
    os.chdir(NEW)
    pivot_root(".", ".")
    _check(libc.umount2(b".", MNT_DETACH), "umount old root")
    os.chdir("/")


def _mountpoint(dest: str, is_dir: bool) -> None:
    """Create what a bind mount needs to land on: a directory, or an empty file."""
    if is_dir:
        os.makedirs(dest, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        if not os.path.lexists(dest):
            os.close(os.open(dest, os.O_WRONLY | os.O_CREAT, 0o444))


def _unescape(field: bytes) -> str:
    """A mountinfo field with its octal escapes (``\\040`` for a space) decoded. By hand: once
    the host root is at /oldroot no codec module can be imported any more."""
    out, i = bytearray(), 0
    while i < len(field):
        if field[i:i + 1] == b"\\" and field[i + 1:i + 4].isdigit():
            out.append(int(field[i + 1:i + 4], 8))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return os.fsdecode(bytes(out))


def _mounts_under(path: str) -> list[str]:
    """Mount points at or below ``path``, from /proc/self/mountinfo."""
    with open(OLD + "/proc/self/mountinfo", "rb") as f:
        points = [_unescape(line.split()[4]) for line in f]
    return [p for p in points if p == path or p.startswith(path.rstrip("/") + "/")]


def remount_ro(path: str) -> None:
    """Make one mount read-only, nosuid, nodev, keeping the flags it must keep."""
    flags = os.statvfs(path).f_flag
    keep = 0
    for st, ms in _KEEP_FLAGS:
        if flags & st:
            keep |= ms
    mount(None, path, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | keep)


def op_ro_bind(dest: str, src: str, _size: int) -> None:
    """A read-only bind of the host path (and of any mount below it)."""
    source = OLD + src
    _mountpoint(dest, os.path.isdir(source))
    mount(source, dest, None, MS_BIND | MS_REC)
    for point in sorted(_mounts_under(dest), key=len):
        remount_ro(point)


def op_dev_bind(dest: str, src: str, _size: int) -> None:
    """A device node of the host (null, zero, urandom), usable."""
    _mountpoint(dest, False)
    mount(OLD + src, dest, None, MS_BIND)


def op_symlink(dest: str, target: str, _size: int) -> None:
    """A symlink (as the host's /lib -> usr/lib)."""
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    os.symlink(target, dest)


def op_proc(dest: str, _src: str, _size: int) -> None:
    """A fresh procfs for the new pid namespace; nested user namespaces forbidden."""
    os.makedirs(dest, exist_ok=True)
    mount("proc", dest, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    # No nested user namespaces (what bwrap --disable-userns does): /proc/sys/user/* are the
    # limits of the reader's user namespace, ours, writable while this procfs is still rw.
    write_file(dest + "/sys/user/max_user_namespaces", "0")


def op_mask(dest: str, _src: str, _size: int) -> None:
    """/dev/null over a /proc file that would show host-wide state."""
    mount(OLD + "/dev/null", dest, None, MS_BIND)
    remount_ro(dest)


def op_tmpfs(dest: str, _src: str, size: int) -> None:
    """A writable, size-capped tmpfs (the program's /tmp)."""
    os.makedirs(dest, exist_ok=True)
    mount("tmpfs", dest, "tmpfs", MS_NOSUID | MS_NODEV, f"mode=0755,size={int(size)}")


def op_data(dest: str, fd_text: str, _size: int) -> None:
    """A read-only file with what the parent wrote to the inherited fd."""
    fd = int(fd_text)
    chunks = []
    while True:
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(fd)
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    with open(dest, "wb") as f:
        f.write(b"".join(chunks))
    os.chmod(dest, 0o444)


def op_remount_ro(dest: str, _src: str, _size: int) -> None:
    """Make a mount built so far read-only (/proc, then /)."""
    remount_ro(dest)


APPLY = {"ro-bind": op_ro_bind, "dev-bind": op_dev_bind, "symlink": op_symlink,
         "proc": op_proc, "mask": op_mask, "tmpfs": op_tmpfs, "data": op_data,
         "remount-ro": op_remount_ro}


# ---------------------------------------------------------------------------------- pid 2
def exec_program(spec: dict) -> None:
    """Shed every privilege, then replace this process with the sandboxed interpreter."""
    os.chdir(spec["cwd"])
    os.setsid()
    with open("/proc/sys/kernel/cap_last_cap") as f:
        last_cap = int(f.read())
    for cap in range(last_cap + 1):
        prctl(PR_CAPBSET_DROP, cap)
    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
    prctl(PR_SET_NO_NEW_PRIVS, 1)
    if spec["seccomp"]:
        prog = bytes.fromhex(spec["seccomp"])
        buf = ctypes.create_string_buffer(prog, len(prog))
        fprog = SockFprog(len(prog) // 8, ctypes.cast(buf, ctypes.c_void_p))
        _check(libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(fprog), 0, 0),
               "seccomp")
    os.closerange(3, 1 << 16)
    os.execve(spec["argv"][0], spec["argv"], spec["env"])


if __name__ == "__main__":
    try:
        outer(marshal.loads(bytes.fromhex(sys.argv[1])))
    except OSError as e:
        print(f"sandbox launcher: {e}", file=sys.stderr)
        sys.exit(125)
