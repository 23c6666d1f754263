"""The host side of the attack suite: the targets hostile programs go for (secrets, canary
files, loopback listeners, victim processes) and the probes that tell whether an attack had its
effect. Everything lives under one pytest temp dir or is removed again by ``cleanup()``."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

CANARY_MTIME = 1_600_000_000


class Listener:
    """A loopback (or Unix) server in a thread that records the first bytes of every
    connection or datagram, so a test can tell which attack reached it."""

    def __init__(self, family: int, kind: int, address: object) -> None:
        self.sock = socket.socket(family, kind)
        if family != socket.AF_UNIX:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(address)
        if kind == socket.SOCK_STREAM:
            self.sock.listen(64)
        self.sock.settimeout(0.2)
        self.address = self.sock.getsockname()
        self.received: list[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return self.address[1]

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                if self.sock.type == socket.SOCK_STREAM:
                    conn, _ = self.sock.accept()
                    conn.settimeout(1.0)
                    try:
                        data = conn.recv(256)
                    except OSError:
                        data = b""
                    conn.close()
                    self.received.append(data or b"<connected, no data>")
                else:
                    self.received.append(self.sock.recv(256))
            except OSError:  # timeouts included
                continue

    def got(self, tag: str) -> bool:
        return any(tag.encode() in data for data in self.received)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


@dataclass
class Ctx:
    """One (attack, mode) run: its own host directory, unique tag/marker, the parameters its
    program receives as ``P`` and what setup recorded for the check."""

    attack: str
    mode: str
    dir: Path
    tag: str
    params: dict = field(default_factory=dict)
    state: dict = field(default_factory=dict)
    victim: subprocess.Popen | None = None

    @property
    def sandboxed(self) -> bool:
        return self.mode != "control"


class Arena:
    """Shared targets of one suite run."""

    def __init__(self, root: Path, project_file: Path) -> None:
        self.root = root
        self.secret = "FEDLLM_FAKE_JUDGE_KEY_" + uuid.uuid4().hex
        self.cwd_secret = "FEDLLM_CWD_SECRET_" + uuid.uuid4().hex
        self.run_secret = "FEDLLM_RUN_DIR_SECRET_" + uuid.uuid4().hex
        self.judge_marker = "fedllm-judge-" + uuid.uuid4().hex[:12]
        self.secret_file = root / "secrets" / "judge.key"
        self.secret_file.parent.mkdir()
        self.secret_file.write_text(self.secret)
        self.run_dir = root / "run"
        self.run_dir.mkdir()
        (self.run_dir / "secret.txt").write_text(self.run_secret)
        self.judge_cwd = root / "judge-cwd"
        self.judge_cwd.mkdir()
        (self.judge_cwd / "cwd_secret.txt").write_text(self.cwd_secret)
        self.project_file = project_file
        self.tcp4 = Listener(socket.AF_INET, socket.SOCK_STREAM, ("127.0.0.1", 0))
        self.tcp6 = Listener(socket.AF_INET6, socket.SOCK_STREAM, ("::1", 0)) \
            if socket.has_ipv6 else None
        self.udp = Listener(socket.AF_INET, socket.SOCK_DGRAM, ("127.0.0.1", 0))
        self.unix_path = str(root / "judge.sock")
        self.unix = Listener(socket.AF_UNIX, socket.SOCK_STREAM, self.unix_path)
        self.abstract_name = "fedllm-attack-" + uuid.uuid4().hex[:12]
        self.abstract = Listener(socket.AF_UNIX, socket.SOCK_STREAM, "\0" + self.abstract_name)
        self.clock_offset = time.time() - time.monotonic()
        self.hostname = socket.gethostname()
        self.contexts: list[Ctx] = []
        self.host_paths: list[str] = []  # paths outside root an attack may create: removed

    def context(self, attack: str, mode: str) -> Ctx:
        tag = f"{attack}-{mode}-{uuid.uuid4().hex[:8]}"
        d = self.root / "runs" / f"{attack}-{mode}"
        d.mkdir(parents=True)
        (d / "outside").mkdir()
        ctx = Ctx(attack, mode, d, tag)
        ctx.params.update(
            mode=mode, tag=tag, marker="fedllm-attack-marker-" + tag, dir=str(d),
            outside=str(d / "outside"), secret_file=str(self.secret_file),
            run_secret_file=str(self.run_dir / "secret.txt"), judge_cwd=str(self.judge_cwd),
            project_file=str(self.project_file), tcp_port=self.tcp4.port,
            tcp6_port=self.tcp6.port if self.tcp6 else 0, udp_port=self.udp.port,
            unix_path=self.unix_path, abstract=self.abstract_name, out=str(d / "outside" / "out"))
        self.contexts.append(ctx)
        return ctx

    # -------------------------------------------------------------- setups used by attacks
    def add_canary(self, ctx: Ctx) -> None:
        cdir = ctx.dir / "canaries"
        cdir.mkdir()
        canary = cdir / "canary.txt"
        canary.write_text("canary " + ctx.tag)
        canary.chmod(0o644)
        os.utime(canary, (CANARY_MTIME, CANARY_MTIME))
        ctx.params.update(canary=str(canary), canary_dir=str(cdir))

    def add_victim(self, ctx: Ctx) -> None:
        """A sacrificial process (its own session) that kill/ptrace attacks go for."""
        ctx.victim = subprocess.Popen(["sleep", "120"], start_new_session=True)
        ctx.params.update(victim=ctx.victim.pid)

    def add_leaked_dir(self, ctx: Ctx) -> None:
        leak = ctx.dir / "leak"
        leak.mkdir()
        (leak / "secret.txt").write_text(self.secret)
        ctx.params.update(leak_dir=str(leak))

    def host_path(self, path: str) -> str:
        self.host_paths.append(path)
        return path

    # ---------------------------------------------------------------------------- probes
    def canary_damage(self, ctx: Ctx) -> str | None:
        """What happened to the canary, or None if it is exactly as created."""
        canary = Path(ctx.params["canary"])
        if not canary.exists():
            return "canary deleted or moved"
        st = canary.stat()
        if canary.read_text() != "canary " + ctx.tag:
            return f"canary content changed to {canary.read_text()[:40]!r}"
        if st.st_mode & 0o7777 != 0o644:
            return f"canary mode changed to {oct(st.st_mode & 0o7777)}"
        if int(st.st_mtime) != CANARY_MTIME:
            return "canary mtime changed"
        try:
            if "user.pwned" in os.listxattr(canary):
                return "canary xattr set"
        except OSError:
            pass
        if len(os.listdir(canary.parent)) != 1:
            return f"canary dir changed: {os.listdir(canary.parent)}"
        return None

    @staticmethod
    def marker_pids(marker: str) -> list[int]:
        """Host pids whose command line carries ``marker``."""
        pids = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    with open(f"/proc/{entry}/cmdline", "rb") as f:
                        if marker.encode() in f.read():
                            pids.append(int(entry))
                except OSError:
                    pass
        return pids

    # ---------------------------------------------------------------------------- cleanup
    def cleanup(self) -> None:
        """Undo whatever an attack managed (in control runs, or in a broken sandbox)."""
        for ctx in self.contexts:
            if ctx.victim is not None and ctx.victim.poll() is None:
                ctx.victim.kill()
            if ctx.victim is not None:
                ctx.victim.wait()
            for pid in self.marker_pids(ctx.params["marker"]):
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
        for p in self.host_paths:
            try:
                os.remove(p)
            except OSError:
                pass
        if socket.gethostname() != self.hostname:
            socket.sethostname(self.hostname)
        for listener in (self.tcp4, self.tcp6, self.udp, self.unix, self.abstract):
            if listener is not None:
                listener.close()
