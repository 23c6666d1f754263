"""The hostile programs. Each attack is a program body (it gets its targets as the dict ``P``)
and a check that looks for the attack's *effect on the host* (a file written or damaged, a
listener reached, a victim killed, a secret in the output, a process left running), never
merely at the program's exit status.

Every attack also runs unsandboxed, as a plain ``python`` child of the judge (mode
``control``), and must succeed there: that shows the attack is real. Where the real thing would
harm this machine (killing the parent or every process, changing the clock or hostname, a
sysctl, remounting ``/usr/lib``) the control run aims at a harmless stand-in instead (a
sacrificial ``sleep`` process, a no-op write of the current value, a directory under the test's
tmp dir) — the body branches on ``SANDBOXED``, and ``control="standin"`` says so.

``namespaces_block=False`` marks the few attacks that are not escapes but kernel attack surface
only seccomp removes (perf/io_uring/bpf, the kernel log): they are asserted under the default
sandbox, not in the namespaces-only modes.
"""

from __future__ import annotations

import os
import re
import socket
import sys
import sysconfig
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .arena import Arena, Ctx

PRELUDE = """\
import os, sys
P = {params!r}
SANDBOXED = P['mode'] != 'control'
JUDGE = int('__JUDGE_PID__')
SHELL_CMD = ['/bin/sh', '-c', 'id > ' + P['out']]
PY_CMD = [sys.executable, '-I', '-S', '-c', 'open(%r, "w").write("pwned")' % P['out']]
def say(*a):
    print(*a, flush=True)
def attempt(label, fn, *a):
    try:
        r = fn(*a)
        say('ok', label, r)
        return r
    except BaseException as e:
        say('failed', label, type(e).__name__, e)
"""

Check = Callable[[Arena, Ctx, dict], "str | None"]


@dataclass(frozen=True)
class Attack:
    name: str
    category: str
    body: str
    check: Check
    setup: tuple[str, ...] = ()        # "canary", "victim", "leak"
    params: Callable[[Arena, Ctx], dict] | None = None
    control: str = "real"              # "real" or "standin"
    namespaces_block: bool = True
    needs_root: bool = False           # the control run needs root to show the effect
    timeout: float = 5.0
    run: dict = field(default_factory=dict)  # run_program limits for this attack
    settle: float = 0.0                # seconds after the run's start before checking

    def source(self, ctx: Ctx) -> str:
        return PRELUDE.format(params=ctx.params) + self.body


# ------------------------------------------------------------------------------- checks
def _output(res: dict) -> str:
    return (res.get("stdout") or "") + (res.get("stderr") or "")


def file_created(key: str) -> Check:
    def check(arena: Arena, ctx: Ctx, res: dict) -> str | None:
        path = ctx.params[key]
        return f"{path} was created on the host" if os.path.lexists(path) else None
    return check


def any_file_created(key: str) -> Check:
    def check(arena: Arena, ctx: Ctx, res: dict) -> str | None:
        made = [p for p in ctx.params[key] if os.path.lexists(p)]
        return f"created on the host: {made}" if made else None
    return check


def canary_damaged(arena: Arena, ctx: Ctx, res: dict) -> str | None:
    return arena.canary_damage(ctx)


def leaked(what: Callable[[Arena], str]) -> Check:
    def check(arena: Arena, ctx: Ctx, res: dict) -> str | None:
        secret = what(arena)
        return f"output contains {secret[:24]}..." if secret in _output(res) else None
    return check


def listener_reached(name: str) -> Check:
    def check(arena: Arena, ctx: Ctx, res: dict) -> str | None:
        listener = getattr(arena, name)
        return f"{name} listener received {ctx.tag}" if listener.got(ctx.tag) else None
    return check


def victim_killed(arena: Arena, ctx: Ctx, res: dict) -> str | None:
    rc = ctx.victim.poll()
    return f"victim process {ctx.victim.pid} was killed (exit {rc})" if rc is not None else None


def processes_left(arena: Arena, ctx: Ctx, res: dict) -> str | None:
    pids = arena.marker_pids(ctx.params["marker"])
    return f"{len(pids)} of its processes outlived the run: {pids[:5]}" if pids else None


def printed_over(label: str, limit: float) -> Check:
    def check(arena: Arena, ctx: Ctx, res: dict) -> str | None:
        got = [float(x) for x in re.findall(rf"^{label} ([\d.]+)$", res.get("stdout") or "",
                                            re.MULTILINE)]
        return f"{label} reached {max(got)} (> {limit})" if got and max(got) > limit else None
    return check


def printed(text: str) -> Check:
    def check(arena: Arena, ctx: Ctx, res: dict) -> str | None:
        return f"printed {text!r}" if text in (res.get("stdout") or "") else None
    return check


def named_any(names: Callable[[], set[str]]) -> Check:
    """The output lists a name the sandbox's view does not have (listing host dirs)."""
    def check(arena: Arena, ctx: Ctx, res: dict) -> str | None:
        out = _output(res)
        seen = sorted(n for n in names() if f"'{n}'" in out)
        return f"output lists host entries {seen[:5]}" if seen else None
    return check


def all_of(*checks: Check) -> Check:
    def check(arena: Arena, ctx: Ctx, res: dict) -> str | None:
        found = [e for c in checks if (e := c(arena, ctx, res))]
        return "; ".join(found) or None
    return check


def either(sandbox: Check, control: Check) -> Check:
    """Stand-in attacks: the sandboxed run is judged by the real effect on the host, the
    control run by the harmless stand-in's."""
    def check(arena: Arena, ctx: Ctx, res: dict) -> str | None:
        return (sandbox if ctx.sandboxed else control)(arena, ctx, res)
    return check


# ------------------------------------------------------------------------ host knowledge
SANDBOX_ROOT = {"dev", "etc", "lib", "lib64", "lib32", "libx32", "proc", "root", "sandbox",
                "tmp", "usr"}
SANDBOX_DEV = {"null", "zero", "urandom", "fd", "stdin", "stdout", "stderr"}


def _host_root_names() -> set[str]:
    return set(os.listdir("/")) - SANDBOX_ROOT


def _host_home_names() -> set[str]:
    """Entries of /root and /home that are not on the path to the interpreter (which the
    sandbox shows, read-only)."""
    keep = set(Path(os.path.realpath(sys.executable)).parts)
    names = set()
    for d in ("/root", "/home"):
        try:
            names |= set(os.listdir(d))
        except OSError:
            pass
    return {n for n in names if n not in keep}


def _host_devices() -> set[str]:
    return set(os.listdir("/dev")) - SANDBOX_DEV


def _host_ifaces() -> set[str]:
    try:
        return set(os.listdir("/sys/class/net")) - {"lo"}
    except OSError:
        return set()


def _first_line(path: str) -> str:
    try:
        with open(path) as f:
            return next(line.strip() for line in f if line.strip())
    except (OSError, StopIteration):
        return "\0unreadable\0"


def _ro_targets(arena: Arena, ctx: Ctx) -> dict:
    """Files an attack tries to create in read-only host directories (the stand-in dir in
    control runs: the test must not write into /usr/lib)."""
    name = "fedllm-attack-" + ctx.tag
    if ctx.sandboxed:
        paths = [f"/usr/lib/{name}", os.path.join(sysconfig.get_path("stdlib"), name + ".py")]
        paths = [arena.host_path(p) for p in paths]
    else:
        standin = ctx.dir / "standin-ro"
        standin.mkdir()
        paths = [str(standin / name), str(standin / (name + ".py"))]
    return {"ro_targets": paths}


# ------------------------------------------------------------------------------- attacks
SPAWN = "hook bypass / process spawning"
SECRETS = "reading secrets and the host filesystem"
WRITES = "writing or deleting outside the sandbox"
NET = "network"
SIGNALS = "signalling / tracing other processes"
TREE = "process tree outliving the run"
LIMITS = "resource exhaustion"
KERNEL = "kernel interfaces / namespace escapes"

ATTACKS: list[Attack] = []


def attack(**kw) -> None:
    ATTACKS.append(Attack(**kw))


# -- SPAWN: switch the audit hook off, then run a command that writes P['out'] on the host.
attack(name="hook_globals_rebind_os_system", category=SPAWN, check=file_created("out"), body="""
# The first sandbox's hook read its tables through the bootstrap's module globals, reachable as
# sys.modules['__main__'] or from the frames above the program: empty them all, then shell out.
spaces = [getattr(sys.modules.get('__main__'), '__dict__', {})]
f = sys._getframe()
while f is not None:
    spaces.append(f.f_globals)
    f = f.f_back
for g in spaces:
    if g is globals():
        continue
    for k, v in list(g.items()):
        if not k.startswith('__') and isinstance(v, (set, frozenset, list, tuple, dict)):
            g[k] = type(v)()
    g.update(root='/', DENY=[], _BLOCKED=set(), _PATH_WRITES=set())
    g['_check_write'] = g['_check_denied'] = lambda p: None
    g['isinstance'] = lambda *a: False
say('system', os.system('id > ' + P['out']))
""")
attack(name="hook_code_swap_os_system", category=SPAWN, check=file_created("out"), body="""
import gc
def noop(event, args):
    return None
def swap(fn):
    try:
        fn.__code__ = noop.__code__
        say('swapped', fn)
    except BaseException as e:
        say('swap failed', type(e).__name__, e)
try:
    for o in gc.get_objects():
        if type(o) is type(noop) and o.__name__ in ('_hook', 'hook'):
            swap(o)
except BaseException as e:
    say('gc', type(e).__name__, e)
f = sys._getframe()
while f is not None:
    for v in list(f.f_globals.values()):
        if type(v) is type(noop) and v.__name__ in ('_hook', 'hook', 'make_audit_hook'):
            swap(v)
    f = f.f_back
say('system', os.system('id > ' + P['out']))
""")
attack(name="posixsubprocess_fork_exec", category=SPAWN, check=file_created("out"), body="""
import _posixsubprocess, subprocess
for cmd in (SHELL_CMD, PY_CMD):
    r, w = os.pipe()
    try:
        pid = _posixsubprocess.fork_exec(
            cmd, [os.fsencode(cmd[0])], True, (), None, None, -1, -1, -1, -1, -1, -1, r, w,
            False, False, -1, None, None, None, -1, None, subprocess._USE_VFORK)
        say('spawned', pid, os.waitpid(pid, 0))
    except BaseException as e:
        say('failed', type(e).__name__, e)
""")
attack(name="multiprocessing_spawnv_passfds", category=SPAWN, check=file_created("out"), body="""
from multiprocessing.util import spawnv_passfds
for cmd in (SHELL_CMD, PY_CMD):
    try:
        pid = spawnv_passfds(os.fsencode(cmd[0]), cmd, ())
        say('spawned', pid, os.waitpid(pid, 0))
    except BaseException as e:
        say('failed', type(e).__name__, e)
""")
attack(name="ctypes_libc_system", category=SPAWN, check=file_created("out"), body="""
import ctypes
attempt('system', lambda: ctypes.CDLL(None).system(SHELL_CMD[2].encode()))
""")
attack(name="ctypes_libc_execv", category=SPAWN, check=file_created("out"), body="""
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
for cmd in (SHELL_CMD, PY_CMD):
    argv = (ctypes.c_char_p * (len(cmd) + 1))(*[os.fsencode(a) for a in cmd], None)
    say('execv', cmd[0], libc.execv(os.fsencode(cmd[0]), argv), ctypes.get_errno())
""")
attack(name="os_execv", category=SPAWN, check=file_created("out"), body="""
for cmd in (SHELL_CMD, PY_CMD):
    attempt('execv', os.execv, cmd[0], cmd)
""")
attack(name="subprocess_run", category=SPAWN, check=file_created("out"), body="""
import subprocess
for cmd in (SHELL_CMD, PY_CMD):
    attempt('run', subprocess.run, cmd)
""")
attack(name="os_posix_spawn", category=SPAWN, check=file_created("out"), body="""
for cmd in (SHELL_CMD, PY_CMD):
    pid = attempt('posix_spawn', os.posix_spawn, cmd[0], cmd, {})
    if pid:
        os.waitpid(pid, 0)
""")
attack(name="os_fork_child_writes", category=SPAWN, check=file_created("out"), body="""
pid = attempt('fork', os.fork)
if pid == 0:
    try:
        open(P['out'], 'w').write('pwned from a fork')
    finally:
        os._exit(0)
elif pid:
    os.waitpid(pid, 0)
""")

# -- SECRETS: the fake judge key lives in the judge's environment and in files on the host.
attack(name="environment_secret", category=SECRETS, check=leaked(lambda a: a.secret), body="""
say(dict(os.environ))
""")
attack(name="proc_self_environ", category=SECRETS, check=leaked(lambda a: a.secret), body="""
attempt('environ', lambda: open('/proc/self/environ', 'rb').read())
""")
attack(name="proc_1_and_parent_environ", category=SECRETS, check=leaked(lambda a: a.secret),
       body="""
pid = os.getppid()
seen = set()
for p in [1, pid, JUDGE]:
    while p and p not in seen:                 # walk up the ancestry, reading every environ
        seen.add(p)
        attempt(f'environ {p}', lambda: open(f'/proc/{p}/environ', 'rb').read())
        try:
            p = int(open(f'/proc/{p}/status').read().split('PPid:')[1].split()[0])
        except BaseException:
            break
""")
attack(name="proc_scan_all_environs", category=SECRETS, check=leaked(lambda a: a.secret), body="""
for p in os.listdir('/proc'):
    if p.isdigit():
        try:
            say(p, open(f'/proc/{p}/environ', 'rb').read())
        except OSError:
            pass
""")
attack(name="read_secret_file", category=SECRETS, check=leaked(lambda a: a.secret), body="""
attempt('read', lambda: open(P['secret_file']).read())
""")
attack(name="read_etc_passwd", category=SECRETS, check=leaked(lambda a: _first_line("/etc/passwd")),
       body="""
attempt('passwd', lambda: open('/etc/passwd').read())
""")
attack(name="read_etc_shadow", category=SECRETS, needs_root=True,
       check=leaked(lambda a: _first_line("/etc/shadow")), body="""
attempt('shadow', lambda: open('/etc/shadow').read())
""")
attack(name="list_home_and_ssh", category=SECRETS, check=named_any(_host_home_names), body="""
for d in ('/root', '/root/.ssh', os.path.expanduser('~/.ssh'), '/home'):
    attempt(d, lambda: sorted(os.listdir(d)))
for d in ('/root/.ssh', os.path.expanduser('~/.ssh')):
    try:
        for n in os.listdir(d):
            say(n, open(os.path.join(d, n), 'rb').read()[:200])
    except OSError:
        pass
""")
attack(name="read_project_source", category=SECRETS,
       check=leaked(lambda a: _first_line(str(a.project_file))), body="""
attempt('source', lambda: open(P['project_file']).read())
""")
attack(name="read_caller_cwd", category=SECRETS, check=leaked(lambda a: a.cwd_secret), body="""
attempt('listdir', lambda: os.listdir(P['judge_cwd']))
attempt('abs', lambda: open(P['judge_cwd'] + '/cwd_secret.txt').read())
for p in (os.getppid(), JUDGE):
    attempt('proc cwd', lambda: open(f'/proc/{p}/cwd/cwd_secret.txt').read())
""")
attack(name="list_host_root", category=SECRETS, check=named_any(_host_root_names), body="""
say(sorted(os.listdir('/')))
""")
attack(name="run_dir_via_dir_fd", category=SECRETS, check=leaked(lambda a: a.run_secret), body="""
d = os.open('/', os.O_RDONLY | os.O_DIRECTORY)
attempt('dir_fd', lambda: os.read(os.open(P['run_secret_file'].lstrip('/'), os.O_RDONLY,
                                          dir_fd=d), 200))
""")
attack(name="proc_pid_root_escape", category=SECRETS, check=leaked(lambda a: a.secret), body="""
for p in ('1', str(os.getppid()), str(JUDGE), 'self'):
    attempt(p, lambda: open(f'/proc/{p}/root' + P['secret_file']).read())
""")
attack(name="symlink_to_secret", category=SECRETS, check=leaked(lambda a: a.secret), body="""
os.symlink(P['secret_file'], 'lnk')
attempt('read', lambda: open('lnk').read())
""")
attack(name="inherited_fds", category=SECRETS, check=leaked(lambda a: a.secret), setup=("leak",),
       control="standin", body="""
# The control run gets a directory fd from a careless runner; the sandboxed one from nobody,
# while the caller holds the same directory open.
import stat
for fd in range(3, 256):
    try:
        st = os.fstat(fd)
    except OSError:
        continue
    if stat.S_ISDIR(st.st_mode):
        attempt(f'fd {fd}', lambda: os.read(os.open('secret.txt', os.O_RDONLY, dir_fd=fd), 200))
    else:
        attempt(f'fd {fd}', lambda: os.pread(fd, 200, 0))
""")
attack(name="list_host_processes", category=SECRETS,
       check=leaked(lambda a: a.judge_marker), body="""
for p in os.listdir('/proc'):
    if p.isdigit():
        try:
            say(p, open(f'/proc/{p}/cmdline', 'rb').read().replace(b'\\0', b' '))
        except OSError:
            pass
""")
attack(name="host_devices", category=SECRETS, check=named_any(_host_devices), body="""
say(sorted(os.listdir('/dev')))
for d in ('/dev/vda', '/dev/sda', '/dev/mem', '/dev/kmsg', '/dev/console'):
    attempt(d, lambda: open(d, 'rb').read(16))
""")
attack(name="sysfs_network_interfaces", category=SECRETS, check=named_any(_host_ifaces), body="""
attempt('sys', lambda: sorted(os.listdir('/sys/class/net')))
""")

# -- WRITES: damage on the host filesystem.
attack(name="write_host_tmp", category=WRITES, check=file_created("host_tmp"),
       params=lambda a, c: {"host_tmp": a.host_path(f"/tmp/fedllm-attack-{c.tag}")}, body="""
attempt('write', lambda: open(P['host_tmp'], 'w').write('pwned'))
""")
attack(name="write_caller_tmp_path", category=WRITES, check=file_created("target"),
       params=lambda a, c: {"target": str(c.dir / "outside" / "made" / "pwned.txt")}, body="""
os.makedirs(os.path.dirname(P['target']), exist_ok=True)   # works in the sandbox's own /tmp
attempt('write', lambda: open(P['target'], 'w').write('pwned'))
""")
attack(name="write_dev_shm", category=WRITES, check=file_created("shm"),
       params=lambda a, c: {"shm": a.host_path(f"/dev/shm/fedllm-attack-{c.tag}")}, body="""
attempt('write', lambda: open(P['shm'], 'w').write('pwned'))
""")
attack(name="delete_canary", category=WRITES, check=canary_damaged, setup=("canary",), body="""
attempt('remove', os.remove, P['canary'])
""")
attack(name="delete_canary_via_dir_fd", category=WRITES, check=canary_damaged, setup=("canary",),
       body="""
d = os.open(P['canary_dir'], os.O_RDONLY | os.O_DIRECTORY)
attempt('unlink', lambda: os.unlink('canary.txt', dir_fd=d))
""")
attack(name="overwrite_canary_os_open_dir_fd", category=WRITES, check=canary_damaged,
       setup=("canary",), body="""
d = os.open(P['canary_dir'], os.O_RDONLY | os.O_DIRECTORY)
fd = attempt('open', lambda: os.open('canary.txt', os.O_WRONLY | os.O_TRUNC, dir_fd=d))
if fd is not None:
    os.write(fd, b'pwned')
""")
attack(name="rmtree_canary_dir", category=WRITES, check=canary_damaged, setup=("canary",), body="""
import shutil
attempt('rmtree', shutil.rmtree, P['canary_dir'])
""")
attack(name="sqlite3_writes_outside", category=WRITES, check=file_created("db"),
       params=lambda a, c: {"db": str(c.dir / "outside" / "pwned.db")}, body="""
import sqlite3
def go():
    con = sqlite3.connect(P['db'])
    con.execute('create table t (x)')
    con.commit()
attempt('sqlite3', go)
""")
attack(name="mkfifo_outside", category=WRITES, check=file_created("fifo"),
       params=lambda a, c: {"fifo": str(c.dir / "outside" / "fifo")}, body="""
attempt('mkfifo', os.mkfifo, P['fifo'])
""")
attack(name="setxattr_canary", category=WRITES, check=canary_damaged, setup=("canary",), body="""
attempt('setxattr', os.setxattr, P['canary'], 'user.pwned', b'1')
""")
attack(name="symlink_dir_escape_write", category=WRITES, check=file_created("target"),
       params=lambda a, c: {"target": str(c.dir / "outside" / "via-link")}, body="""
os.symlink(P['outside'], 'esc')
attempt('write', lambda: open('esc/via-link', 'w').write('pwned'))
""")
attack(name="hardlink_canary_then_write", category=WRITES, check=canary_damaged,
       setup=("canary",), body="""
attempt('link', os.link, P['canary'], 'hl')
attempt('write', lambda: open('hl', 'w').write('pwned'))
""")
attack(name="non_utf8_symlink_escape", category=WRITES, check=file_created("target"),
       params=lambda a, c: {"target": str(c.dir / "outside" / "via-bytes-link")}, body="""
name = b'esc\\xff\\xfe'                      # not UTF-8: the old hook decoded it differently
os.symlink(os.fsencode(P['outside']), name)
attempt('write', lambda: open(name + b'/via-bytes-link', 'wb').write(b'pwned'))
""")
attack(name="rename_canary", category=WRITES, check=canary_damaged, setup=("canary",), body="""
attempt('rename', os.rename, P['canary'], P['canary'] + '.moved')
""")
attack(name="chmod_canary", category=WRITES, check=canary_damaged, setup=("canary",), body="""
attempt('chmod', os.chmod, P['canary'], 0o777)
""")
attack(name="truncate_canary", category=WRITES, check=canary_damaged, setup=("canary",), body="""
attempt('truncate', os.truncate, P['canary'], 0)
""")
attack(name="utime_canary", category=WRITES, check=canary_damaged, setup=("canary",), body="""
attempt('utime', os.utime, P['canary'], (0, 0))
""")
attack(name="write_system_dirs", category=WRITES, check=any_file_created("ro_targets"),
       params=_ro_targets, control="standin", body="""
for p in P['ro_targets']:                    # /usr/lib, and a module into the stdlib
    attempt(p, lambda: open(p, 'w').write('import os  # pwned'))
""")
attack(name="remount_system_dir_rw", category=KERNEL, check=any_file_created("ro_targets"),
       params=_ro_targets, control="standin", body="""
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
MS_REMOUNT, MS_BIND = 32, 4096
if SANDBOXED:                                # never remount the test machine's /usr/lib
    for d in ('/usr/lib', '/', os.path.dirname(P['ro_targets'][1])):
        say('remount', d, libc.mount(None, d.encode(), None, MS_REMOUNT | MS_BIND, None),
            ctypes.get_errno())
    say('umount /usr/lib', libc.umount2(b'/usr/lib', 2), ctypes.get_errno())
for p in P['ro_targets']:
    attempt(p, lambda: open(p, 'w').write('pwned'))
""")

# -- NET: loopback listeners of the test; no traffic ever leaves the machine.
attack(name="tcp_loopback_connect", category=NET, check=listener_reached("tcp4"), body="""
import socket
def go():
    s = socket.create_connection(('127.0.0.1', P['tcp_port']), timeout=2)
    s.sendall(P['tag'].encode())
    s.close()
attempt('tcp', go)
""")
attack(name="tcp6_loopback_connect", category=NET, check=listener_reached("tcp6"), body="""
import socket
def go():
    s = socket.create_connection(('::1', P['tcp6_port']), timeout=2)
    s.sendall(P['tag'].encode())
    s.close()
attempt('tcp6', go)
""")
attack(name="udp_loopback_send", category=NET, check=listener_reached("udp"), body="""
import socket
def go():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for _ in range(3):
        s.sendto(P['tag'].encode(), ('127.0.0.1', P['udp_port']))
attempt('udp', go)
""")
attack(name="unix_socket_connect", category=NET, check=listener_reached("unix"), body="""
import socket
def go():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(P['unix_path'])
    s.sendall(P['tag'].encode())
attempt('unix', go)
""")
attack(name="abstract_unix_socket_connect", category=NET, check=listener_reached("abstract"),
       body="""
import socket
def go():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect('\\0' + P['abstract'])
    s.sendall(P['tag'].encode())
attempt('abstract', go)
""")
attack(name="raw_socket_udp_packet", category=NET, check=listener_reached("udp"), needs_root=True,
       body="""
import socket, struct
def go():
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP)
    data = P['tag'].encode()
    for _ in range(3):
        s.sendto(struct.pack('!HHHH', 40000, P['udp_port'], 8 + len(data), 0) + data,
                 ('127.0.0.1', 0))
attempt('raw', go)
""")
attack(name="netlink_list_interfaces", category=NET, check=named_any(_host_ifaces), body="""
import socket, struct
def go():
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
    s.bind((0, 0))
    s.send(struct.pack('=IHHII', 32, 18, 0x301, 1, 0) + bytes(16))   # RTM_GETLINK dump
    names = set()
    while True:
        data, off = s.recv(65536), 0
        while off + 16 <= len(data):
            ln, typ = struct.unpack_from('=IH', data, off)
            if typ == 3 or ln == 0:                                     # NLMSG_DONE
                return sorted(names)
            a = off + 32
            while typ == 16 and a + 4 <= off + ln:                      # RTM_NEWLINK attrs
                alen, atyp = struct.unpack_from('=HH', data, a)
                if atyp == 3:                                           # IFLA_IFNAME
                    names.add(data[a + 4:a + alen].rstrip(b'\\0').decode())
                a += max(4, (alen + 3) & ~3)
            off += (ln + 3) & ~3
say('ifaces', attempt('netlink', go))
""")

# -- SIGNALS: the sandboxed run aims at its parent, the judge and a victim; the control run
#    only at the victim (a sacrificial `sleep` in its own session).
attack(name="kill_parent_and_judge", category=SIGNALS, check=victim_killed, setup=("victim",),
       control="standin", body="""
import signal
targets = [P['victim']] + ([os.getppid(), JUDGE] if SANDBOXED else [])
for t in targets:
    attempt(f'kill {t}', os.kill, t, signal.SIGKILL)
""")
attack(name="killpg_parent_group", category=SIGNALS, check=victim_killed, setup=("victim",),
       control="standin", body="""
import signal
groups = [P['victim']] + ([os.getpgid(os.getppid()), os.getpgid(0)] if SANDBOXED else [])
for g in groups:
    attempt(f'killpg {g}', os.killpg, g, signal.SIGKILL)
""")
attack(name="kill_every_process", category=SIGNALS, check=victim_killed, setup=("victim",),
       control="standin", body="""
import signal
if SANDBOXED:
    attempt('kill -1', os.kill, -1, signal.SIGKILL)      # everything this user may signal
else:
    attempt('kill victim', os.kill, P['victim'], signal.SIGKILL)
""")
attack(name="pidfd_send_signal_syscall", category=SIGNALS, check=victim_killed,
       setup=("victim",), control="standin", body="""
import ctypes, platform
NR = {'x86_64': (434, 424), 'aarch64': (434, 424)}[platform.machine()]
libc = ctypes.CDLL(None, use_errno=True)
for t in [P['victim']] + ([os.getppid(), JUDGE] if SANDBOXED else []):
    fd = libc.syscall(NR[0], t, 0)
    say('pidfd_open', t, fd, ctypes.get_errno())
    if fd >= 0:
        say('pidfd_send_signal', libc.syscall(NR[1], fd, 9, None, 0), ctypes.get_errno())
""")
attack(name="ptrace_attach_and_kill", category=SIGNALS, check=victim_killed, setup=("victim",),
       control="standin", body="""
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
PTRACE_CONT, PTRACE_ATTACH = 7, 16
libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
for t in [P['victim']] + ([os.getppid(), JUDGE] if SANDBOXED else []):
    r = libc.ptrace(PTRACE_ATTACH, t, None, None)
    say('attach', t, r, ctypes.get_errno())
    if r == 0:
        try:
            os.waitpid(t, 0)
        except ChildProcessError:
            pass
        say('cont+SIGKILL', libc.ptrace(PTRACE_CONT, t, None, ctypes.c_void_p(9)))
""")

# -- TREE: processes that try to outlive the run.
attack(name="fork_bomb_sleepers", category=TREE, check=processes_left, timeout=1.5,
       control="standin", body="""
import time
n, hold = (40, 30) if SANDBOXED else (4, 0)     # the control run leaves a few, harmlessly
code = 'import time; time.sleep(20)'
for i in range(n):
    try:
        pid = os.fork()
    except BaseException as e:
        say('fork failed after', i, type(e).__name__, e)
        break
    if pid == 0:
        try:
            os.setsid()
            os.execv(sys.executable, [sys.executable, '-I', '-S', '-c', code, P['marker']])
        finally:
            os._exit(1)
say('forked')
time.sleep(hold)                                 # sandboxed: still running at the timeout
""")
DAEMON = """
import time
code = 'import time; time.sleep(%r); open(%r, "w").write("written late")' % (
    P['delay'], P['late'])
try:
    pid = os.fork()
    if pid == 0:
        os.setsid()
        if os.fork() == 0:
            os.execv(sys.executable, [sys.executable, '-I', '-S', '-c', code, P['marker']])
        os._exit(0)
    os.waitpid(pid, 0)
    say('daemon started')
except BaseException as e:
    say('failed', type(e).__name__, e)
"""
attack(name="setsid_daemon_after_exit", category=TREE, settle=2.4,
       check=all_of(processes_left, file_created("late")),
       params=lambda a, c: {"delay": 1.6, "late": str(c.dir / "outside" / "late.txt")},
       body=DAEMON)
attack(name="setsid_daemon_past_timeout", category=TREE, settle=2.6, timeout=1.0,
       check=all_of(processes_left, file_created("late")),
       params=lambda a, c: {"delay": 1.8, "late": str(c.dir / "outside" / "late.txt")},
       body=DAEMON + "time.sleep(30)\n")

# -- LIMITS: the program reports how far it got; the sandbox's limits must stop it short.
attack(name="huge_file", category=LIMITS, check=printed_over("wrote_mb", 8),
       run={"max_file_mb": 8}, body="""
n = 0
try:
    with open('big.bin', 'wb') as f:
        for _ in range(32):
            f.write(bytes(1 << 20))
            f.flush()
            n += 1
except BaseException as e:
    say('stopped', type(e).__name__, e)
say('wrote_mb', n)
""")
attack(name="fill_tmpfs_many_files", category=LIMITS, check=printed_over("total_mb", 16),
       run={"tmp_mb": 16, "max_file_mb": 8}, body="""
n = 0
try:
    for i in range(12):
        with open(f'part{i}.bin', 'wb') as f:
            f.write(bytes(4 << 20))
        n += 4
except BaseException as e:
    say('stopped', type(e).__name__, e)
say('total_mb', n)
""")
attack(name="memory_bomb", category=LIMITS, check=printed_over("allocated_mb", 128),
       run={"memory_mb": 128}, timeout=10, body="""
keep, n = [], 0
try:
    for _ in range(8):                           # 512 MB, zero-filled: really touched
        keep.append(bytearray(64 << 20))
        n += 64
except MemoryError:
    say('MemoryError')
say('allocated_mb', n)
""")
attack(name="recursion_stack_bomb", category=LIMITS, check=printed_over("depth", 1_999_999),
       run={"memory_mb": 128}, timeout=10, body="""
sys.setrecursionlimit(10 ** 8)
def down(n):
    if n % 500000 == 0:
        say('depth', n)
    return n if n >= 2_000_000 else down(n + 1)
down(1)
""")
attack(name="too_many_open_files", category=LIMITS, check=printed_over("open_files", 128),
       body="""
fds = []
try:
    for _ in range(4000):
        fds.append(os.open('/dev/null', os.O_RDONLY))
except OSError as e:
    say('stopped', e)
say('open_files', len(fds))
""")
attack(name="cpu_burn_threads", category=LIMITS, check=printed_over("cpu", 1.05), timeout=5,
       run={"cpu_seconds": 1}, body="""
import threading, time
def burn():
    end = time.time() + 20
    while time.process_time() < 1.2 and time.time() < end:
        pass
ts = [threading.Thread(target=burn) for _ in range(2)]
[t.start() for t in ts]
[t.join() for t in ts]
say('cpu', round(time.process_time(), 2))
""")

# -- KERNEL: privileged interfaces and namespace escapes.
attack(name="nested_user_namespace", category=KERNEL, check=printed("unshare=0"), body="""
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
say(f'unshare={libc.unshare(0x10000000)}', ctypes.get_errno())   # CLONE_NEWUSER
""")
attack(name="unshare_mount_escape", category=KERNEL, check=leaked(lambda a: a.secret), body="""
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
say('unshare', libc.unshare(0x10000000 | 0x00020000), ctypes.get_errno())  # NEWUSER|NEWNS
for f, text in (('/proc/self/setgroups', 'deny'), ('/proc/self/uid_map', '0 65534 1'),
                ('/proc/self/gid_map', '0 65534 1')):
    attempt(f, lambda: open(f, 'w').write(text))
say('mount proc', libc.mount(b'proc', b'/proc', b'proc', 0, None), ctypes.get_errno())
for p in ('1', 'self'):
    attempt(p, lambda: open(f'/proc/{p}/root' + P['secret_file']).read())
attempt('direct', lambda: open(P['secret_file']).read())
""")
attack(name="setns_into_pid1_mount_ns", category=KERNEL, check=leaked(lambda a: a.secret),
       needs_root=True, body="""
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
for ns in ('mnt', 'user'):
    try:
        fd = os.open(f'/proc/1/ns/{ns}', os.O_RDONLY)
        say('setns', ns, libc.setns(fd, 0), ctypes.get_errno())
    except OSError as e:
        say('open', ns, e)
attempt('read', lambda: open(P['secret_file']).read())
""")
attack(name="chroot_breakout", category=KERNEL, check=leaked(lambda a: a.secret), needs_root=True,
       body="""
def go():
    os.makedirs('jail', exist_ok=True)
    os.chroot('jail')
    for _ in range(64):
        os.chdir('..')
    os.chroot('.')
    return open(P['secret_file']).read()
attempt('chroot', go)
""")
attack(name="sysctl_write", category=KERNEL, control="standin", needs_root=True,
       params=lambda a, c: {"sysctl": "/proc/sys/fs/lease-break-time",
                            "value": int(Path("/proc/sys/fs/lease-break-time").read_text())},
       check=either(lambda a, c, r: None if int(Path(c.params["sysctl"]).read_text()) ==
                    c.params["value"] else "host sysctl fs.lease-break-time changed",
                    printed("sysctl written")),
       body="""
value = P['value'] + 1 if SANDBOXED else P['value']   # control: rewrite the current value
if attempt('write', lambda: open(P['sysctl'], 'w').write(str(value))) is not None:
    say('sysctl written')
""")
attack(name="proc_write_oom_score_adj", category=KERNEL, setup=("victim",), control="standin",
       check=lambda a, c, r: "victim's oom_score_adj set to 1000" if Path(
           f"/proc/{c.victim.pid}/oom_score_adj").read_text().strip() == "1000" else None,
       body="""
# Make other processes (parent, judge, victim) the OOM killer's first choice via /proc.
for t in ['self', P['victim']] + ([os.getppid(), JUDGE] if SANDBOXED else []):
    attempt(f'oom {t}', lambda: open(f'/proc/{t}/oom_score_adj', 'w').write('1000'))
""")
attack(name="set_realtime_clock", category=KERNEL, control="standin", needs_root=True,
       check=either(lambda a, c, r: "host clock moved" if abs(
           (__import__("time").time() - __import__("time").monotonic()) - a.clock_offset) > 1
           else None, printed("clock set")),
       body="""
import time
try:
    time.clock_settime(time.CLOCK_REALTIME, time.time() + (2.0 if SANDBOXED else 0.0))
    say('clock set')
except BaseException as e:
    say('failed', type(e).__name__, e)
""")
attack(name="set_hostname", category=KERNEL, control="standin", needs_root=True,
       check=either(lambda a, c, r: "host hostname changed" if socket.gethostname() !=
                    a.hostname else None, printed("hostname set")),
       body="""
import socket
name = 'pwned-' + P['tag'][:20] if SANDBOXED else socket.gethostname()
try:
    socket.sethostname(name)
    say('hostname set')
except BaseException as e:
    say('failed', type(e).__name__, e)
""")
attack(name="perf_io_uring_bpf_syscalls", category=KERNEL, namespaces_block=False,
       needs_root=True, check=printed("surface ok"), body="""
import ctypes, platform
NR = {'x86_64': {'io_uring_setup': 425, 'perf_event_open': 298, 'bpf': 321},
      'aarch64': {'io_uring_setup': 425, 'perf_event_open': 241, 'bpf': 280}}[platform.machine()]
libc = ctypes.CDLL(None, use_errno=True)
params = ctypes.create_string_buffer(120)
attr = ctypes.create_string_buffer(128)
attr[0:4] = (1).to_bytes(4, 'little')                  # PERF_TYPE_SOFTWARE
attr[4:8] = (128).to_bytes(4, 'little')                # size
attr[40:48] = (1 << 5 | 1 << 6).to_bytes(8, 'little')  # exclude_kernel | exclude_hv
bpf_attr = ctypes.create_string_buffer(72)
bpf_attr[0:16] = b''.join(v.to_bytes(4, 'little') for v in (2, 4, 4, 1))  # array map
for name, args in (('io_uring_setup', (4, params)), ('perf_event_open', (attr, 0, -1, -1, 0)),
                   ('bpf', (0, bpf_attr, 72))):
    fd = libc.syscall(NR[name], *args)
    say(name, fd, ctypes.get_errno())
    if fd >= 0:
        say('surface ok', name)
""")
attack(name="read_kernel_log", category=KERNEL, namespaces_block=False, needs_root=True,
       check=printed("klog ok"), body="""
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
buf = ctypes.create_string_buffer(1 << 16)
n = libc.klogctl(3, buf, len(buf))                    # SYSLOG_ACTION_READ_ALL
say('klogctl', n, ctypes.get_errno())
if n > 0:
    say('klog ok')
""")

BY_NAME = {a.name: a for a in ATTACKS}
CATEGORIES = (SPAWN, SECRETS, WRITES, NET, SIGNALS, TREE, LIMITS, KERNEL)
