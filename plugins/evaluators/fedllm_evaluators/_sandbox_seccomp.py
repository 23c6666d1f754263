"""A small seccomp-BPF filter for the sandbox (stdlib only): an extra kernel layer on top of the
namespaces, never the wall on its own.

Why a filter when the namespaces already isolate: it removes the kernel attack surface that the
namespaces leave reachable and that benchmark code never needs, and it makes process creation
impossible, which bounds a fork bomb even where ``RLIMIT_NPROC`` is not enforced (the kernel
exempts processes whose real uid is host root, which the sandbox's processes are when the caller
is root). It refuses, with an errno (never by killing, so a program sees an ordinary OSError):

* new processes: ``fork``/``vfork``, ``clone`` without ``CLONE_THREAD`` (threads still work) and
  ``clone3`` (ENOSYS, so libc falls back to ``clone`` for threads, whose flags a filter can see);
* namespaces and mounts: ``unshare``, ``setns``, ``mount``/``umount2``/``pivot_root``/``chroot``
  and the new mount API;
* other processes: ``ptrace``, ``process_vm_readv``/``writev``, ``pidfd_getfd``,
  ``process_madvise``;
* privileged or risky kernel interfaces: bpf, perf_event_open, userfaultfd, io_uring (its
  operations would bypass this filter), keyrings, kexec/modules, reboot, swap, acct, quotactl,
  clock/hostname changes, syslog, file handles, vhangup, iopl/ioperm;
* sockets other than AF_UNIX, AF_INET and AF_INET6 (netlink, packet, ... ), and the TIOCSTI /
  TIOCLINUX ioctls (typing into a terminal);
* any other syscall ABI than the native one (x32, or i386 through ``int 0x80``): the process is
  killed, since a filter keyed by native numbers means nothing there.

``build_filter()`` returns the raw ``struct sock_filter`` array that bubblewrap's ``--seccomp FD``
reads and that the fallback launcher installs with ``prctl(PR_SET_SECCOMP)``; ``None`` on an
architecture whose syscall numbers are not listed here (the layer is then reported as absent).
"""

from __future__ import annotations

import errno
import os
import struct
import sys

# BPF instruction classes / fields (linux/bpf_common.h).
_LD_W_ABS = 0x20          # BPF_LD | BPF_W | BPF_ABS
_JEQ_K = 0x15             # BPF_JMP | BPF_JEQ | BPF_K
_JGE_K = 0x35             # BPF_JMP | BPF_JGE | BPF_K
_JSET_K = 0x45            # BPF_JMP | BPF_JSET | BPF_K
_RET_K = 0x06             # BPF_RET | BPF_K

_RET_ALLOW = 0x7FFF0000
_RET_KILL_PROCESS = 0x80000000
_RET_ERRNO = 0x00050000

# struct seccomp_data offsets: nr (0), arch (4), instruction_pointer (8), args[6] (16 + 8 i).
_OFF_NR, _OFF_ARCH = 0, 4


def _arg_low(i: int) -> int:
    """Offset of the low 32 bits of syscall argument ``i`` (little-endian hosts only)."""
    return 16 + 8 * i


_CLONE_THREAD = 0x00010000
_CLONE_NEW_ANY = (0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000
                  | 0x40000000)  # NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET
_AF_ALLOWED = (1, 2, 10)  # AF_UNIX, AF_INET, AF_INET6
_TIOCSTI, _TIOCLINUX = 0x5412, 0x541C

# Denied outright (EPERM). Numbers from the kernel's unistd tables, per architecture.
_DENY = ("fork", "vfork", "ptrace", "process_vm_readv", "process_vm_writev", "pidfd_getfd",
         "process_madvise", "mount", "umount2", "pivot_root", "chroot", "open_tree",
         "move_mount", "fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr", "unshare",
         "setns", "swapon", "swapoff", "reboot", "sethostname", "setdomainname", "iopl",
         "ioperm", "init_module", "finit_module", "delete_module", "kexec_load",
         "kexec_file_load", "quotactl", "acct", "settimeofday", "clock_settime",
         "clock_adjtime", "adjtimex", "bpf", "perf_event_open", "userfaultfd", "keyctl",
         "add_key", "request_key", "io_uring_setup", "io_uring_enter", "io_uring_register",
         "name_to_handle_at", "open_by_handle_at", "syslog", "vhangup", "lookup_dcookie",
         "uselib", "_sysctl")

_X86_64 = {"fork": 57, "vfork": 58, "clone": 56, "clone3": 435, "ptrace": 101,
           "process_vm_readv": 310, "process_vm_writev": 311, "pidfd_getfd": 438,
           "process_madvise": 440, "mount": 165, "umount2": 166, "pivot_root": 155,
           "chroot": 161, "open_tree": 428, "move_mount": 429, "fsopen": 430, "fsconfig": 431,
           "fsmount": 432, "fspick": 433, "mount_setattr": 442, "unshare": 272, "setns": 308,
           "swapon": 167, "swapoff": 168, "reboot": 169, "sethostname": 170,
           "setdomainname": 171, "iopl": 172, "ioperm": 173, "init_module": 175,
           "finit_module": 313, "delete_module": 176, "kexec_load": 246,
           "kexec_file_load": 320, "quotactl": 179, "acct": 163, "settimeofday": 164,
           "clock_settime": 227, "clock_adjtime": 305, "adjtimex": 159, "bpf": 321,
           "perf_event_open": 298, "userfaultfd": 323, "keyctl": 250, "add_key": 248,
           "request_key": 249, "io_uring_setup": 425, "io_uring_enter": 426,
           "io_uring_register": 427, "name_to_handle_at": 303, "open_by_handle_at": 304,
           "syslog": 103, "vhangup": 153, "lookup_dcookie": 212, "uselib": 134, "_sysctl": 156,
           "socket": 41, "ioctl": 16}
_AARCH64 = {"clone": 220, "clone3": 435, "ptrace": 117, "process_vm_readv": 270,
            "process_vm_writev": 271, "pidfd_getfd": 438, "process_madvise": 440, "mount": 40,
            "umount2": 39, "pivot_root": 41, "chroot": 51, "open_tree": 428, "move_mount": 429,
            "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433,
            "mount_setattr": 442, "unshare": 97, "setns": 268, "swapon": 224, "swapoff": 225,
            "reboot": 142, "sethostname": 161, "setdomainname": 162, "init_module": 105,
            "finit_module": 273, "delete_module": 106, "kexec_load": 104,
            "kexec_file_load": 294, "quotactl": 60, "acct": 89, "settimeofday": 170,
            "clock_settime": 112, "clock_adjtime": 266, "adjtimex": 171, "bpf": 280,
            "perf_event_open": 241, "userfaultfd": 282, "keyctl": 219, "add_key": 217,
            "request_key": 218, "io_uring_setup": 425, "io_uring_enter": 426,
            "io_uring_register": 427, "name_to_handle_at": 264, "open_by_handle_at": 265,
            "syslog": 116, "vhangup": 58, "lookup_dcookie": 18, "socket": 198, "ioctl": 29}
# machine -> (AUDIT_ARCH_*, syscall table, first number of a foreign ABI sharing the arch value)
_ARCHES = {"x86_64": (0xC000003E, _X86_64, 0x40000000), "aarch64": (0xC00000B7, _AARCH64, None)}


class _Asm:
    """A tiny BPF assembler: jumps name labels, resolved to relative offsets at the end (BPF
    jumps are forward only and conditional offsets are 8 bits, which this short filter fits)."""

    def __init__(self) -> None:
        self.code: list[tuple[int, object, object, int]] = []
        self.labels: dict[str, int] = {}

    def label(self, name: str) -> None:
        self.labels[name] = len(self.code)

    def op(self, code: int, k: int = 0, jt: object = 0, jf: object = 0) -> None:
        self.code.append((code, jt, jf, k))

    def _offset(self, at: int, target: object) -> int:
        """A jump target (label or literal offset) as an offset from instruction ``at``."""
        if isinstance(target, int):
            return target
        offset = self.labels[str(target)] - at - 1
        if not 0 <= offset <= 255:
            raise ValueError(f"seccomp: jump to {target} out of range ({offset})")
        return offset

    def assemble(self) -> bytes:
        out = bytearray()
        for i, (code, jt, jf, k) in enumerate(self.code):
            out += struct.pack("=HBBI", code, self._offset(i, jt), self._offset(i, jf), k)
        return bytes(out)


def build_filter(machine: str | None = None) -> bytes | None:
    """The filter program for ``machine`` (default: this host), or None if unsupported here."""
    machine = machine or os.uname().machine
    if machine not in _ARCHES or sys.byteorder != "little":
        return None
    arch, table, foreign_abi = _ARCHES[machine]
    a = _Asm()
    a.op(_LD_W_ABS, _OFF_ARCH)
    a.op(_JEQ_K, arch, jt=0, jf="kill")
    a.op(_LD_W_ABS, _OFF_NR)
    if foreign_abi is not None:
        a.op(_JGE_K, foreign_abi, jt="kill", jf=0)
    a.op(_JEQ_K, table["clone3"], jt="enosys", jf=0)
    a.op(_JEQ_K, table["clone"], jt="clone", jf=0)
    a.op(_JEQ_K, table["socket"], jt="socket", jf=0)
    a.op(_JEQ_K, table["ioctl"], jt="ioctl", jf=0)
    for name in _DENY:
        if name in table:
            a.op(_JEQ_K, table[name], jt="eperm", jf=0)
    a.op(_RET_K, _RET_ALLOW)

    a.label("clone")                       # threads yes, processes and namespaces no
    a.op(_LD_W_ABS, _arg_low(0))
    a.op(_JSET_K, _CLONE_NEW_ANY, jt="eperm", jf=0)
    a.op(_JSET_K, _CLONE_THREAD, jt="allow", jf="eperm")

    a.label("socket")
    a.op(_LD_W_ABS, _arg_low(0))
    for family in _AF_ALLOWED:
        a.op(_JEQ_K, family, jt="allow", jf=0)
    a.op(_RET_K, _RET_ERRNO | errno.EAFNOSUPPORT)

    a.label("ioctl")
    a.op(_LD_W_ABS, _arg_low(1))
    a.op(_JEQ_K, _TIOCSTI, jt="eperm", jf=0)
    a.op(_JEQ_K, _TIOCLINUX, jt="eperm", jf="allow")

    a.label("allow")
    a.op(_RET_K, _RET_ALLOW)
    a.label("eperm")
    a.op(_RET_K, _RET_ERRNO | errno.EPERM)
    a.label("enosys")
    a.op(_RET_K, _RET_ERRNO | errno.ENOSYS)
    a.label("kill")
    a.op(_RET_K, _RET_KILL_PROCESS)
    return a.assemble()
