"""``flower-superlink`` with the Fleet API alone on the public address: ``python -m
fedllm_flower.superlink --public HOST:PORT [--public-ssl-certfile C --public-ssl-keyfile K]
<flower-superlink arguments>``.

Flower 1.41 serves its Control API (``flwr run/ls/stop/log``), its Runtime API (the ServerApp's
and SuperExec's, ``acquire-task`` included) and the Fleet API (SuperNodes) on one ``--host:
--port``, and the Control API has no user authentication in the open-source distribution: any
client that trusts the server certificate may list, stop or start runs. This launcher builds
Flower's own app (``flwr.superlink.main.create_app`` with flwr's own argument parsing) and
serves it on two listeners in one event loop:

* the **private** one, ``--host:--port`` of the flower-superlink arguments (``fedllm serve``
  gives 127.0.0.1 and a free port): everything, with the app's lifespan (it starts the
  SuperExec that runs the ServerApp). fedllm's own ``flwr run`` / ``supernode register`` use it;
* the **public** one, ``--public``: only ``/v1/fleet/<method>`` and ``/health``; every other
  path (Control, Runtime, the API docs) is a 404 before it reaches the app.

TLS: the private listener uses the ``--ssl-*`` certificates of the flower-superlink arguments,
the public one ``--public-ssl-certfile/--public-ssl-keyfile`` (none: plain HTTP, which
``fedllm serve`` allows only with ``--insecure``).
"""

from __future__ import annotations

import asyncio
import re
import sys
from typing import Any

#: what the public listener serves: Fleet API methods and the health probe, nothing else
PUBLIC_PATH = re.compile(r"^(/v1/fleet/[a-z0-9-]+|/health)$")


class FleetOnly:
    """Pure-ASGI filter: anything but the Fleet API (and the health probe) is a 404."""

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not PUBLIC_PATH.match(scope.get("path", "")):
            if scope["type"] == "http":
                await send({"type": "http.response.start", "status": 404,
                            "headers": [(b"content-type", b"text/plain")]})
                await send({"type": "http.response.body", "body": b"Not Found"})
            return
        await self.app(scope, receive, send)


def _take(args: list[str], flag: str) -> str | None:
    if flag not in args:
        return None
    i = args.index(flag)
    value = args[i + 1]
    del args[i:i + 2]
    return value


async def _serve(public: str, cert: str | None, key: str | None) -> None:
    import uvicorn
    from flwr.supercore import log
    from flwr.supercore.http_logging import get_uvicorn_log_config
    from flwr.supercore.logger import console_handler
    from flwr.superlink.cli.flower_superlink import (
        SuperLinkLifespan,
        _parse_superlink_lifespan_config,
    )
    from flwr.superlink.main import create_app

    cfg = _parse_superlink_lifespan_config()  # flwr's own parsing and checks (reads sys.argv)
    app = create_app(cfg, SuperLinkLifespan)
    host, _, port = public.rpartition(":")
    log_config = get_uvicorn_log_config(console_handler.level)
    private = uvicorn.Server(uvicorn.Config(
        app, host=cfg.host, port=cfg.port, lifespan="on", workers=1, access_log=True,
        log_config=log_config, ssl_keyfile=cfg.ssl_keyfile, ssl_certfile=cfg.ssl_certfile))
    public_srv = uvicorn.Server(uvicorn.Config(
        FleetOnly(app), host=host.strip("[]"), port=int(port), lifespan="off", workers=1,
        access_log=True, log_config=log_config, ssl_keyfile=key, ssl_certfile=cert))
    log(20, "fedllm: SuperLink Control + Runtime + Fleet API on %s:%s (private); Fleet API "
        "only on %s (public)", cfg.host, cfg.port, public)
    first = asyncio.create_task(private.serve())
    while not private.started and not first.done():  # the lifespan first: the SuperExec runs
        await asyncio.sleep(0.05)
    tasks = [first, asyncio.create_task(public_srv.serve())]
    await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    private.should_exit = public_srv.should_exit = True  # one stopped (a signal): stop both
    await asyncio.gather(*tasks, return_exceptions=True)


def main() -> None:
    args = sys.argv[1:]
    public = _take(args, "--public")
    cert, key = _take(args, "--public-ssl-certfile"), _take(args, "--public-ssl-keyfile")
    if not public or bool(cert) != bool(key):
        sys.exit("usage: python -m fedllm_flower.superlink --public HOST:PORT "
                 "[--public-ssl-certfile C --public-ssl-keyfile K] <flower-superlink args>")
    sys.argv = ["flower-superlink", *args]
    asyncio.run(_serve(public, cert, key))


if __name__ == "__main__":
    main()
