"""``fedllm serve`` / ``fedllm join`` / ``fedllm keys``: a federation across machines on Flower.

Contributed to the ``fedllm`` CLI by this distribution's ``fedllm.commands`` entry point. The
module imports only click; Flower and the process plumbing (``deploy.py``) load inside the
commands.
"""

from __future__ import annotations

import hashlib
import json
import signal
from pathlib import Path

import click

from fedllm import Command, Plugin, hookimpl
from fedllm.errors import ConfigError, FedLLMError

CONTEXT = {"help_option_names": ["-h", "--help"]}


def _flower():
    from fedllm_flower import deploy

    return deploy


class FlowerCommands(Command):
    def __init__(self, config):
        self.config = config

    @hookimpl
    def fedllm_register_commands(self, cli: click.Group) -> None:
        for command in (serve, join, keys):
            cli.add_command(command)


def _consoles():
    from fedllm.cli.main import consoles

    return consoles.err, consoles.out



@click.command(context_settings=CONTEXT)
@click.argument("config", required=False, type=click.Path(dir_okay=False))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config key, as for `fedllm run`.")
@click.option("--address", default="127.0.0.1:9092", show_default=True,
              help="HOST:PORT the SuperNodes connect to: it serves Flower's Fleet API only "
              "(the Control and Runtime APIs listen on a private 127.0.0.1 port).")
@click.option("--insecure", is_flag=True,
              help="No TLS and no SuperNode authentication (trusted networks, tests).")
@click.option("--keys", "keys_dir", type=click.Path(file_okay=False),
              help="The coordinator's folder from `fedllm keys OUT` (OUT/coordinator): ca.crt, "
              "server.crt/key and the *.pub of the SuperNodes allowed to join. Refused if it "
              "holds the CA's or a node's private key.")
@click.option("--min-clients", type=int, default=None,
              help="Fewest answering clients a round may complete with (default 1).")
@click.option("--round-timeout", type=float, default=None,
              help="Seconds to wait for a round's replies; later ones count as dropped.")
@click.option("--num-nodes", type=int, default=None,
              help="SuperNodes to wait for before the first round.")
@click.option("--secure-aggregation", "secagg", is_flag=True,
              help="Flower SecAgg+: the coordinator sees only each round's weighted mean "
              "(tune with --set runtime.backend_options.secure_aggregation.KEY=VALUE).")
@click.option("--resume", type=click.Path(file_okay=False),
              help="Continue RUN_DIR from its last checkpoint.")
@click.option("--stop-after", type=int, default=None,
              help="Stop (with a checkpoint) once this many rounds are done.")
@click.option("--workdir", type=click.Path(file_okay=False), default=None,
              help="SuperLink state and logs (default: a folder under FEDLLM_HOME).")
def serve(config, overrides, address, insecure, keys_dir, min_clients, round_timeout,
          num_nodes, secagg, resume, stop_after, workdir) -> None:
    """Coordinate a federation: start a SuperLink and run the rounds over its SuperNodes."""
    console, out = _consoles()
    import time

    from fedllm.config import apply_override, build_config, resolve
    from fedllm.paths import fedllm_home

    deploy = _flower()
    deploy.split_address(address, "--address")
    tls, node_keys = None, []
    if not insecure:
        if not keys_dir:
            raise ConfigError("serve: TLS and SuperNode authentication are on by default: "
                              "pass --keys DIR (create it with `fedllm keys DIR`) or "
                              "--insecure")
        tls = deploy.tls_from_dir(Path(keys_dir))
        node_keys = sorted(Path(keys_dir).glob("*.pub"))
        if not node_keys:
            raise ConfigError(f"--keys: {keys_dir!r} holds no SuperNode public key "
                              f"(*.pub); create them with `fedllm keys {keys_dir} "
                              f"--node NAME`")
    raw = None
    if resume:
        if config or overrides:
            raise FedLLMError("--resume takes its config from the run directory; "
                              "do not pass CONFIG or --set with it")
    else:
        raw = build_config(config, list(overrides))
        apply_override(raw, "runtime.backend=flower")
        opts = {"min_clients": min_clients, "round_timeout": round_timeout,
                "num_nodes": num_nodes}
        for k, v in opts.items():
            if v is not None:
                apply_override(raw, f"runtime.backend_options.{k}={v}")
        if secagg and (raw.get("runtime", {}).get("backend_options") or {}).get(
                "secure_aggregation") is None:
            apply_override(raw, "runtime.backend_options.secure_aggregation={}")
        raw["output_dir"] = str(Path(raw.get("output_dir", "runs")).resolve())
        resolve(raw)  # every config error before anything starts
        raw = resolve(raw).to_dict()
        raw.pop("plugins", None)
    wd = Path(workdir) if workdir else fedllm_home() / "flower" / time.strftime(
        "serve-%Y%m%d-%H%M%S")
    console.print(f"SuperLink on {address} ({'insecure' if insecure else 'TLS + node auth'})"
                  f"; logs in {wd}", highlight=False)
    res = deploy.serve(raw, resume=Path(resume).resolve() if resume else None,
                       address=address, workdir=wd.resolve(), tls=tls, node_keys=node_keys,
                       stop_after=stop_after, on_ready=lambda: console.print(
                           f"SuperLink ready on {address}: waiting for SuperNodes "
                           f"({len(node_keys)} keys registered)", highlight=False))
    out.print(f"run directory: {res['run_dir']}", highlight=False)

@click.command(context_settings=CONTEXT)
@click.option("--server", required=True, help="The coordinator's SuperLink, HOST:PORT.")
@click.option("--data", "data", required=True,
              help="This node's data source (sets dataset.path); it never leaves here.")
@click.option("--client-id", "client_ids", multiple=True,
              help="Client id(s) this node holds (default: whichever it is sent).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Node-side overrides, e.g. --set dataset.name=fedllm-bench-json.")
@click.option("--insecure", is_flag=True, help="No TLS, no node authentication.")
@click.option("--root-cert", type=click.Path(dir_okay=False),
              help="CA certificate that signed the SuperLink's (ca.crt from `fedllm keys`).")
@click.option("--auth-key", type=click.Path(dir_okay=False),
              help="This node's private key (NAME.key from `fedllm keys`).")
@click.option("--port", type=int, default=None,
              help="Local port for the SuperNode's ClientApp API (default: a free one).")
@click.option("--state-dir", type=click.Path(file_okay=False), default=None,
              help="Where per-client algorithm state is kept (default: FEDLLM_HOME).")
@click.option("--threads", type=int, default=None, help="torch threads for local training.")
@click.option("--pull-interval", type=click.FloatRange(min=0.05), default=0.2,
              show_default=True,
              help="Seconds an idle SuperNode waits before asking the SuperLink again "
              "(Flower's own: 3). Each ask is one request to the coordinator.")
@click.option("--isolation", type=click.Choice(["warm", "subprocess"]), default="warm",
              show_default=True,
              help="warm: one worker process keeps the model loaded across messages and "
              "runs; subprocess: Flower's fresh ClientApp process per message.")
@click.option("--retry-for", type=float, default=120, show_default=True,
              help="Seconds to keep restarting a SuperNode the SuperLink refused or that "
              "could not connect (e.g. started before the coordinator was ready).")
def join(server, data, client_ids, overrides, insecure, root_cert, auth_key, port,
         state_dir, threads, pull_interval, isolation, retry_for) -> None:
    """Join a federation as a data owner: start a SuperNode running fedllm's ClientApp."""
    console, out = _consoles()
    from fedllm.paths import fedllm_home

    deploy = _flower()
    deploy.split_address(server, "--server")
    if not insecure and not (root_cert and auth_key):
        raise ConfigError("join: TLS and node authentication are on by default: pass "
                          "--root-cert ca.crt and --auth-key NODE.key (from `fedllm keys`) "
                          "or --insecure")
    for opt, p in (("--root-cert", root_cert), ("--auth-key", auth_key)):
        if p and not Path(p).is_file():
            raise ConfigError(f"{opt}: {p!r} does not exist")
    for o in overrides:
        if "=" not in o:
            raise ConfigError(f"--set {o!r}: expected KEY=VALUE")
    settings = {"clients": [c for cid in client_ids for c in cid.split(",") if c],
                "set": [f"dataset.path={Path(data).resolve()}", *overrides],
                "state_dir": str(Path(state_dir).resolve()) if state_dir else None,
                "threads": threads}
    blob = json.dumps(settings, sort_keys=True)
    node_dir = fedllm_home() / "flower" / "nodes"
    node_dir.mkdir(parents=True, exist_ok=True)
    node_file = node_dir / f"{hashlib.sha256(blob.encode()).hexdigest()[:16]}.json"
    node_file.write_text(blob, encoding="utf-8")
    node = deploy.Node(
        server, node_file, port or deploy.free_port(),
        root_cert=None if insecure else Path(root_cert).resolve(),
        auth_key=None if insecure else Path(auth_key).resolve(),
        secret_dir=node_dir / "secrets", warm=isolation == "warm",
        pull_interval=pull_interval,
        say=lambda msg: console.print(f"[yellow]{msg}[/]", highlight=False))
    console.print(f"SuperNode joining {server} with clients "
                  f"{settings['clients'] or 'any'} ({isolation} ClientApp)", highlight=False)
    import time

    def _term(signum, frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _term)
    t0 = time.monotonic()
    try:
        while True:
            rc = node.run()
            node.stop()
            if rc == 0 or time.monotonic() - t0 > retry_for:
                break
            console.print(f"[yellow]SuperNode exited ({rc}); retrying[/]")
            time.sleep(3)
    except (KeyboardInterrupt, SystemExit):
        rc = 130
    finally:
        node.stop()
    raise SystemExit(rc)

@click.command(context_settings=CONTEXT)
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.option("--node", "nodes", multiple=True, required=True,
              help="A SuperNode name; writes OUT_DIR/nodes/NAME/NAME.key (give that folder "
              "to that node) and OUT_DIR/coordinator/NAME.pub.")
@click.option("--host", "hosts", multiple=True,
              help="Names/IPs the SuperLink is reached by (default 127.0.0.1, localhost).")
def keys(out_dir, nodes, hosts) -> None:
    """Create a CA, the SuperLink's TLS certificate and SuperNode key pairs, each party's
    files in its own folder: coordinator/, nodes/NAME/, ca/ (the CA key: keep it offline)."""
    console, out = _consoles()
    deploy = _flower()
    root = Path(out_dir)
    files = deploy.make_keys(root, list(nodes), list(hosts) or ["127.0.0.1", "localhost"])
    for who, p in files:
        out.print(f"{who:>18}  {p}", highlight=False, soft_wrap=True)
    coord = root / deploy.COORDINATOR
    example = root / deploy.NODES / nodes[0]
    out.print(
        f"\ncoordinator: fedllm serve CONFIG --keys {coord}\n"
        f"each node:   give {root / deploy.NODES}/NAME/ to node NAME only; there:\n"
        f"             fedllm join --root-cert {example}/ca.crt --auth-key "
        f"{example}/{nodes[0]}.key ...\n"
        f"{root / deploy.CA_DIR}/ca.key: the CA's private key; needed by no one to run: keep "
        "it offline (whoever holds it can impersonate the coordinator)", highlight=False,
        soft_wrap=True)


plugin = Plugin(kind="command", name="flower", factory=FlowerCommands,
                description="`fedllm serve` / `join` / `keys`: a federation across machines on "
                "Flower (TLS, node authentication, SecAgg+).")
