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
            args = [str(a) for a in proc.args] if isinstance(proc.args, (list, tuple)) \
                else [str(proc.args)]
            name = args[args.index("-m") + 1] if "-m" in args[:-1] else Path(args[0]).name
            raise FedLLMError(f"{name} exited (code {proc.returncode}); log: {log}\n"
                              f"{tail(log)}")
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


#: where ``fedllm keys OUT`` puts each party's files
COORDINATOR, NODES, CA_DIR = "coordinator", "nodes", "ca"


def _write(path: Path, data: bytes, private: bool) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if private:  # created owner-only: never readable by others, not even briefly
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        path.chmod(0o600)
    else:
        path.write_bytes(data)
    return path


def _ca_and_server(hosts: list[str], days: int = 365) -> tuple[bytes, bytes, bytes, bytes]:
    """PEM bytes of a new CA (cert, key) and of a server certificate for ``hosts`` (cert,
    key) signed by it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = _dt.datetime.now(_dt.timezone.utc)
    pem = serialization.Encoding.PEM
    ca_key = ec.generate_private_key(ec.SECP384R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fedllm CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - _dt.timedelta(minutes=5))
          .not_valid_after(now + _dt.timedelta(days=days))
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
           .not_valid_after(now + _dt.timedelta(days=days))
           .add_extension(x509.SubjectAlternativeName(san), critical=False)
           .sign(ca_key, hashes.SHA256()))
    pkcs8 = serialization.PrivateFormat.PKCS8
    none = serialization.NoEncryption()
    return (ca.public_bytes(pem), ca_key.private_bytes(pem, pkcs8, none),
            srv.public_bytes(pem), srv_key.private_bytes(pem, pkcs8, none))


def make_keys(out: Path, nodes: list[str], hosts: list[str]) -> list[tuple[str, Path]]:
    """A CA, a SuperLink certificate for ``hosts`` signed by it, and one SECP384R1 key pair per
    node in OpenSSH format (what ``flower-supernode --auth-supernode-private-key`` and
    ``flwr supernode register`` read), each party's files in its own folder:

    * ``OUT/coordinator/``: ca.crt, server.crt, server.key, NAME.pub (``serve --keys``);
    * ``OUT/nodes/NAME/``: ca.crt, NAME.key (only that node gets it);
    * ``OUT/ca/``: ca.key (and ca.crt): the CA's private key, for no one (keep it offline).

    Returns (who gets it, path) for each file written."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"keys: {str(out)!r} is not empty; give a new folder")
    for name in nodes:
        if not name or "/" in name or name.startswith(".") or name in ("ca", "server"):
            raise ConfigError(f"--node {name!r}: give a plain file name other than 'ca' and "
                              f"'server'")
    if len(set(nodes)) != len(nodes):
        raise ConfigError(f"--node: a name is given twice in {nodes}")
    ca_crt, ca_key, srv_crt, srv_key = _ca_and_server(hosts)
    coord, ca_dir = out / COORDINATOR, out / CA_DIR
    files = [("coordinator", _write(coord / "ca.crt", ca_crt, False)),
             ("coordinator", _write(coord / "server.crt", srv_crt, False)),
             ("coordinator", _write(coord / "server.key", srv_key, True))]
    node_files = []
    for name in nodes:
        k = ec.generate_private_key(ec.SECP384R1())
        node = out / NODES / name
        files.append(("coordinator", _write(coord / f"{name}.pub", k.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH), False)))
        node_files.append((f"node {name}", _write(node / "ca.crt", ca_crt, False)))
        node_files.append((f"node {name}", _write(node / f"{name}.key", k.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption()), True)))
    files += node_files
    files.append(("no one (offline)", _write(ca_dir / "ca.key", ca_key, True)))
    files.append(("no one (offline)", _write(ca_dir / "ca.crt", ca_crt, False)))
    for d in (out / NODES, ca_dir, *[out / NODES / n for n in nodes]):
        if d.is_dir():
            d.chmod(0o700)
    return files


def _private_key_kind(data: bytes, ca_public: bytes | None) -> str | None:
    """What private key ``data`` holds ("the CA's private key", ...), None if none."""
    if b"PRIVATE KEY-----" not in data:
        return None
    from cryptography.hazmat.primitives import serialization

    if b"OPENSSH PRIVATE KEY" in data:
        return "a SuperNode's private key"
    try:
        key = serialization.load_pem_private_key(data, password=None)
        pub = key.public_key().public_bytes(serialization.Encoding.PEM,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
    except (ValueError, TypeError):
        return "a private key"
    return "the CA's private key" if ca_public is not None and pub == ca_public \
        else "a private key"


def coordinator_key_problems(keys: Path) -> list[str]:
    """Private keys other than the SuperLink's own ``server.key`` in a ``serve --keys``
    folder: the CA's (whoever holds it can mint a server certificate every node trusts) or a
    node's (whoever holds it can join as that node) belong elsewhere."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    ca_public = None
    try:
        ca_public = x509.load_pem_x509_certificate((keys / "ca.crt").read_bytes()).public_key() \
            .public_bytes(serialization.Encoding.PEM,
                          serialization.PublicFormat.SubjectPublicKeyInfo)
    except (OSError, ValueError):
        pass
    out = []
    for p in sorted(keys.rglob("*")):
        if not p.is_file() or p == keys / "server.key" or p.stat().st_size > 1 << 20:
            continue
        try:
            kind = _private_key_kind(p.read_bytes(), ca_public)
        except OSError:
            continue
        if kind is None and p.name == "ca.key":
            kind = "the CA's private key"
        if kind is not None:
            out.append(f"{p} ({kind})")
    return out


def tls_from_dir(keys: Path) -> Tls:
    if not (keys / "ca.crt").is_file() and (keys / COORDINATOR / "ca.crt").is_file():
        raise ConfigError(f"--keys: give the coordinator's folder {str(keys / COORDINATOR)!r} "
                          f"(made by `fedllm keys {keys}`), not {str(keys)!r}")
    tls = Tls(keys / "ca.crt", keys / "server.crt", keys / "server.key")
    for p in (tls.ca, tls.cert, tls.key):
        if not p.is_file():
            raise ConfigError(f"--keys: {str(p)!r} does not exist; create the certificates "
                              f"with `fedllm keys DIR` and pass DIR/{COORDINATOR} (or pass "
                              f"--insecure)")
    bad = coordinator_key_problems(keys)
    if bad:
        raise ConfigError(
            f"--keys: {str(keys)!r} holds private keys the coordinator must not have: "
            f"{'; '.join(bad)}. It needs only ca.crt, server.crt, server.key and the nodes' "
            f"*.pub: keep the CA's key offline and give each node only its own key "
            f"(`fedllm keys OUT` writes OUT/{COORDINATOR}, OUT/{NODES}/NAME and OUT/{CA_DIR} "
            f"apart)")
    return tls


def loopback_tls(folder: Path) -> Tls:
    """A throw-away CA and certificate for 127.0.0.1: the SuperLink's private listener (the
    user's certificate need not name 127.0.0.1)."""
    ca_crt, _, srv_crt, srv_key = _ca_and_server(["127.0.0.1", "localhost"], days=30)
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    return Tls(_write(folder / "ca.crt", ca_crt, False), _write(folder / "server.crt", srv_crt,
                                                                 False),
               _write(folder / "server.key", srv_key, True))


# --------------------------------------------------------------------------- SuperLink


class SuperLink:
    """Flower's SuperLink in ``workdir``, on two listeners (``fedllm_flower.superlink``): the
    public ``host:port`` serves the Fleet API only (SuperNodes); a private 127.0.0.1 port
    serves everything (Control: our ``flwr run`` / ``supernode register``; Runtime: the
    ServerApp)."""

    def __init__(self, workdir: Path, host: str, port: int, tls: Tls | None, node_auth: bool):
        self.workdir, self.host, self.port, self.tls = workdir, host, port, tls
        self.node_auth = node_auth
        self.private_port = free_port()
        self.flwr_home = workdir / "flwr_home"
        self.flwr_home.mkdir(parents=True, exist_ok=True)
        self.log = workdir / "superlink.log"
        self.proc: subprocess.Popen | None = None

    @property
    def private_address(self) -> str:
        return f"127.0.0.1:{self.private_port}"

    def start(self, timeout: float = 60) -> None:
        public = f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"
        cmd = [sys.executable, "-m", "fedllm_flower.superlink", "--public", public,
               "--host", "127.0.0.1", "--port", str(self.private_port),
               "--disable-runtime-dependency-installation"]
        # no --database: Flower's state in memory (a file costs ~1 s per round in SQLite
        # writes); fedllm's checkpoints, not Flower's state, carry a run across restarts
        loop = None
        if self.tls is None:
            cmd.append("--insecure")
        else:
            loop = loopback_tls(self.workdir / "loopback-tls")
            cmd += ["--public-ssl-certfile", str(self.tls.cert),
                    "--public-ssl-keyfile", str(self.tls.key),
                    "--ssl-ca-certfile", str(loop.ca), "--ssl-certfile", str(loop.cert),
                    "--ssl-keyfile", str(loop.key)]
        if self.node_auth:
            cmd.append("--enable-supernode-auth")
        self.proc = subprocess.Popen(cmd, stdout=self.log.open("w"), stderr=subprocess.STDOUT,
                                     cwd=self.workdir, env=child_env(FLWR_HOME=str(self.flwr_home)),
                                     start_new_session=True)
        wait_port("127.0.0.1", self.private_port, self.proc, timeout, self.log)
        wait_port("127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host, self.port,
                  self.proc, timeout, self.log)
        tls_line = ('insecure = true' if loop is None else f'root-certificates = "{loop.ca}"')
        (self.flwr_home / "config.toml").write_text(
            f'[superlink]\ndefault = "{FEDERATION}"\n\n[superlink.{FEDERATION}]\n'
            f'address = "{self.private_address}"\n{tls_line}\n', encoding="utf-8")

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
    """Start a SuperLink whose public ``address`` serves only the Fleet API, run the
    federation through its private loopback listener, stop it."""
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


class Node:
    """What ``fedllm join`` runs: a SuperNode and, unless ``warm`` is off, fedllm's warm
    ClientApp worker (``fedllm_flower.worker``), supervised together.

    The SuperNode (``fedllm_flower.supernode``: Flower's, with ``pull_interval``) runs with
    ``--isolation process`` and a fresh HMAC secret (``--superexec-auth-secret-file``, 0600),
    so it launches no ClientApp process itself and only a holder of the secret may claim its
    tasks. The worker claims them, keeps the model loaded, heartbeats each task, and exits with
    the SuperNode; a worker that dies is restarted. ``warm=False``: Flower's own subprocess
    isolation (a fresh ``flwr-clientapp`` per message)."""

    def __init__(self, server: str, node_file: Path, port: int, *, root_cert: Path | None,
                 auth_key: Path | None, secret_dir: Path, warm: bool = True,
                 pull_interval: float = 3.0, say=print):
        self.server, self.node_file, self.port = server, node_file, port
        self.root_cert, self.auth_key, self.warm = root_cert, auth_key, warm
        self.pull_interval = pull_interval
        self.secret = secret_dir / f"{node_file.stem}.secret"
        self.say = say
        self.supernode: subprocess.Popen | None = None
        self.worker: subprocess.Popen | None = None

    def supernode_command(self) -> list[str]:
        cmd = [sys.executable, "-m", "fedllm_flower.supernode",
               "--pull-interval", f"{self.pull_interval:g}", "--superlink", self.server,
               "--host", "127.0.0.1", "--port", str(self.port),
               "--node-config", f"fedllm-node='{self.node_file}'"]
        if self.warm:
            cmd += ["--isolation", "process", "--superexec-auth-secret-file", str(self.secret)]
        if self.root_cert is None:
            cmd.append("--insecure")
        else:
            cmd += ["--root-certificates", str(self.root_cert)]
        if self.auth_key is not None:
            cmd += ["--auth-supernode-private-key", str(self.auth_key)]
        return cmd

    def worker_command(self) -> list[str]:
        assert self.supernode is not None
        return [sys.executable, "-m", "fedllm_flower.worker", "--runtime-api-address",
                f"127.0.0.1:{self.port}", "--secret-file", str(self.secret),
                "--supernode-pid", str(self.supernode.pid)]

    def _start_worker(self) -> None:
        self.worker = subprocess.Popen(self.worker_command(), env=child_env())

    def run(self) -> int:
        """Start the SuperNode (and worker); return the SuperNode's exit code."""
        if self.warm:
            self.secret.parent.mkdir(parents=True, exist_ok=True)
            self.secret.parent.chmod(0o700)
            _write(self.secret, os.urandom(32), private=True)
        # same process group as `fedllm join`: a signal to the group stops them all
        self.supernode = subprocess.Popen(self.supernode_command(), env=child_env())
        started = False
        while True:
            rc = self.supernode.poll()
            if rc is not None:
                return rc
            if self.warm and not started:
                with socket.socket() as s:
                    s.settimeout(0.5)
                    started = s.connect_ex(("127.0.0.1", self.port)) == 0
                if started:
                    self._start_worker()
            elif self.warm and self.worker is not None and self.worker.poll() is not None:
                self.say(f"the ClientApp worker exited ({self.worker.returncode}); "
                         "restarting it")
                time.sleep(1)
                if self.supernode.poll() is None:
                    self._start_worker()
            time.sleep(0.3)

    def stop(self) -> None:
        for p in (self.worker, self.supernode):
            if p is not None and p.poll() is None:
                p.terminate()
        for p in (self.worker, self.supernode):
            if p is None:
                continue
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.worker = self.supernode = None
        if self.warm:
            self.secret.unlink(missing_ok=True)
