"""Process plumbing for ``fedllm serve`` / ``join`` / ``keys``: a SuperLink, SuperNodes, TLS.

We start Flower's own executables (``flower-superlink``, ``flower-supernode``, ``flwr run``)
with the installed fedllm as the app: the generated app folder only names our ServerApp and
ClientApp modules and lists no dependencies, and the SuperLink runs with
``--disable-runtime-dependency-installation`` (nothing is installed when a run starts).
"""

from __future__ import annotations

import datetime as _dt
import ipaddress
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from fedllm.errors import ConfigError, FedLLMError

FEDERATION = "fedllm"


def bin_path(name: str) -> str:
    """Flower's executables from the environment fedllm runs in."""
    p = Path(sys.executable).parent / name
    return str(p) if p.exists() else name


def child_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env.setdefault("OMP_NUM_THREADS", "1")
    env.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    env.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    env.update(extra)
    return env


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def split_address(addr: str, what: str) -> tuple[str, int]:
    host, sep, port = addr.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ConfigError(f"{what}: {addr!r} is not HOST:PORT (e.g. 127.0.0.1:9092)")
    return host.strip("[]"), int(port)


def wait_port(host: str, port: int, proc: subprocess.Popen, timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            name = Path(str(proc.args[0] if isinstance(proc.args, (list, tuple))
                            else proc.args)).name
            raise FedLLMError(f"{name} exited (code {proc.returncode}); "
                              f"log: {log}\n{tail(log)}")
        with socket.socket() as s:
            s.settimeout(0.5)
            if s.connect_ex((host, port)) == 0:
                return
        time.sleep(0.3)
    raise FedLLMError(f"nothing listens on {host}:{port} after {timeout:g} s; log: {log}")


def tail(path: Path, n: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


def stop(proc: subprocess.Popen | None, grace: float = 5.0) -> None:
    """Stop a process we started and everything it spawned (its own session/group)."""
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


# --------------------------------------------------------------------------- TLS / keys


@dataclass
class Tls:
    ca: Path
    cert: Path
    key: Path


def make_keys(out: Path, nodes: list[str], hosts: list[str]) -> dict[str, Path]:
    """A CA, a SuperLink certificate for ``hosts`` signed by it, and one SECP384R1 key pair per
    node in OpenSSH format (what ``flower-supernode --auth-supernode-private-key`` and
    ``flwr supernode register`` read)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    out.mkdir(parents=True, exist_ok=True)
    now = _dt.datetime.now(_dt.timezone.utc)
    pem = serialization.Encoding.PEM

    def write(path: Path, data: bytes, private: bool) -> Path:
        path.write_bytes(data)
        if private:
            path.chmod(0o600)
        return path

    ca_key = ec.generate_private_key(ec.SECP384R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fedllm CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - _dt.timedelta(minutes=5))
          .not_valid_after(now + _dt.timedelta(days=365))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    srv_key = ec.generate_private_key(ec.SECP384R1())
    san: list[x509.GeneralName] = []
    for h in hosts:
        try:
            san.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            san.append(x509.DNSName(h))
    srv = (x509.CertificateBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
           .issuer_name(ca_name).public_key(srv_key.public_key())
           .serial_number(x509.random_serial_number())
           .not_valid_before(now - _dt.timedelta(minutes=5))
           .not_valid_after(now + _dt.timedelta(days=365))
           .add_extension(x509.SubjectAlternativeName(san), critical=False)
           .sign(ca_key, hashes.SHA256()))
    files = {
        "ca.crt": write(out / "ca.crt", ca.public_bytes(pem), False),
        "ca.key": write(out / "ca.key", ca_key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()), True),
        "server.crt": write(out / "server.crt", srv.public_bytes(pem), False),
        "server.key": write(out / "server.key", srv_key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()), True),
    }
    for name in nodes:
        k = ec.generate_private_key(ec.SECP384R1())
        files[f"{name}.key"] = write(out / f"{name}.key", k.private_bytes(
            pem, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()), True)
        files[f"{name}.pub"] = write(out / f"{name}.pub", k.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH), False)
    return files


def tls_from_dir(keys: Path) -> Tls:
    tls = Tls(keys / "ca.crt", keys / "server.crt", keys / "server.key")
    for p in (tls.ca, tls.cert, tls.key):
        if not p.is_file():
            raise ConfigError(f"--keys: {str(p)!r} does not exist; create the certificates "
                              f"with `fedllm keys {keys}` (or pass --insecure)")
    return tls


# --------------------------------------------------------------------------- SuperLink


class SuperLink:
    """A ``flower-superlink`` bound to ``host:port`` only, in ``workdir``."""

    def __init__(self, workdir: Path, host: str, port: int, tls: Tls | None, node_auth: bool):
        self.workdir, self.host, self.port, self.tls = workdir, host, port, tls
        self.node_auth = node_auth
        self.flwr_home = workdir / "flwr_home"
        self.flwr_home.mkdir(parents=True, exist_ok=True)
        self.log = workdir / "superlink.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 60) -> None:
        cmd = [bin_path("flower-superlink"), "--host", self.host, "--port", str(self.port),
               "--disable-runtime-dependency-installation",
               "--database", str(self.workdir / "state.db")]
        if self.tls is None:
            cmd.append("--insecure")
        else:
            cmd += ["--ssl-ca-certfile", str(self.tls.ca), "--ssl-certfile", str(self.tls.cert),
                    "--ssl-keyfile", str(self.tls.key)]
        if self.node_auth:
            cmd.append("--enable-supernode-auth")
        self.proc = subprocess.Popen(cmd, stdout=self.log.open("w"), stderr=subprocess.STDOUT,
                                     cwd=self.workdir, env=child_env(FLWR_HOME=str(self.flwr_home)),
                                     start_new_session=True)
        wait_port(self.host, self.port, self.proc, timeout, self.log)
        tls_line = ('insecure = true' if self.tls is None
                    else f'root-certificates = "{self.tls.ca}"')
        (self.flwr_home / "config.toml").write_text(
            f'[superlink]\ndefault = "{FEDERATION}"\n\n[superlink.{FEDERATION}]\n'
            f'address = "{self.host}:{self.port}"\n{tls_line}\n', encoding="utf-8")

    def flwr(self, *args: str, timeout: float | None = None, stream: bool = False
             ) -> subprocess.CompletedProcess:
        env = child_env(FLWR_HOME=str(self.flwr_home))
        return subprocess.run([bin_path("flwr"), *args], env=env, cwd=self.workdir,
                              timeout=timeout, text=True,
                              stdout=None if stream else subprocess.PIPE,
                              stderr=None if stream else subprocess.STDOUT)

    def register(self, public_key: Path) -> None:
        if not public_key.is_file():
            raise ConfigError(f"--node-key: {str(public_key)!r} does not exist")
        res = self.flwr("supernode", "register", str(public_key), FEDERATION, timeout=60)
        if res.returncode != 0:
            raise FedLLMError(f"registering node key {public_key} failed: {res.stdout[-800:]}")

    def stop(self) -> None:
        stop(self.proc)


def write_app(app_dir: Path, request: Path) -> Path:
    """A Flower app folder that only points at the installed fedllm_flower modules."""
    app_dir.mkdir(parents=True, exist_ok=True)
    (app_dir / "pyproject.toml").write_text(f'''[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "fedllm-app"
version = "1.0.0"
description = "fedllm federation (the installed fedllm is the app)"
license = "Apache-2.0"
dependencies = []

[tool.hatch.build.targets.wheel]
packages = ["."]

[tool.flwr.app]
publisher = "fedllm"

[tool.flwr.app.components]
serverapp = "fedllm_flower.server_app:app"
clientapp = "fedllm_flower.client_app:app"

[tool.flwr.app.config]
fedllm-request = "{request}"
''', encoding="utf-8")
    (app_dir / "README.md").write_text("Generated by `fedllm serve`.\n", encoding="utf-8")
    return app_dir


def serve(raw_config: dict | None, *, resume: Path | None, address: str, workdir: Path,
          tls: Tls | None, node_keys: list[Path], stop_after: int | None,
          timeout: float | None = None, on_ready=None) -> dict:
    """Start a SuperLink on ``address``, run the federation through it, stop it."""
    host, port = split_address(address, "--address")
    workdir.mkdir(parents=True, exist_ok=True)
    request = workdir / "request.json"
    result = workdir / "result.json"
    result.unlink(missing_ok=True)
    request.write_text(json.dumps({"config": raw_config, "resume": str(resume) if resume else None,
                                   "stop_after": stop_after, "result": str(result)}),
                       encoding="utf-8")
    app_dir = write_app(workdir / "app", request)
    link = SuperLink(workdir, host, port, tls, node_auth=bool(node_keys))
    try:
        link.start()
        for k in node_keys:
            link.register(k)
        if on_ready is not None:
            on_ready()
        res = link.flwr("run", str(app_dir), FEDERATION, "--stream", timeout=timeout,
                        stream=True)
        if not result.is_file():
            raise FedLLMError(f"the federation ended without a result (flwr run exit "
                              f"{res.returncode}); SuperLink log: {link.log}\n{tail(link.log)}")
        out = json.loads(result.read_text(encoding="utf-8"))
        if "error" in out:
            raise FedLLMError(f"the federation failed: {out['error']}")
        return out
    finally:
        link.stop()


def supernode_command(server: str, node_file: Path, port: int, *, root_cert: Path | None,
                      auth_key: Path | None) -> list[str]:
    cmd = [bin_path("flower-supernode"), "--superlink", server, "--host", "127.0.0.1",
           "--port", str(port), "--node-config", f"fedllm-node='{node_file}'"]
    if root_cert is None:
        cmd.append("--insecure")
    else:
        cmd += ["--root-certificates", str(root_cert)]
    if auth_key is not None:
        cmd += ["--auth-supernode-private-key", str(auth_key)]
    return cmd
