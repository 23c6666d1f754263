"""``runtime.backend: flower-sim``: the same federation on Flower's simulation engine (Ray).

The engine stays in this process and in charge; Flower's ``run_simulation`` runs in a
background thread with a ServerApp whose only job is to hand its ``Grid`` to this backend and
wait until the run closes. ClientApps run in Ray actors (``num_supernodes`` virtual SuperNodes),
each building its own context from the config the messages carry.
"""

from __future__ import annotations

import importlib.util
import os
import queue
import threading
from typing import TYPE_CHECKING

from fedllm import Plugin, hookimpl
from fedllm.errors import FedLLMError

from .grid_backend import GridBackend
from .options import SimConfig

if TYPE_CHECKING:
    from fedllm.context import RunContext


class SimBackend(GridBackend):
    config: SimConfig

    @hookimpl
    def fedllm_check(self, ctx: RunContext) -> list[str] | None:
        out = super().fedllm_check(ctx) or []
        if importlib.util.find_spec("ray") is None:
            out.append("runtime.backend: 'flower-sim' needs Flower's simulation extra (Ray): "
                       "pip install 'fedllm-flower[simulation]' (or 'flwr[simulation]'); or "
                       "use runtime.backend=in-process")
        return out

    @hookimpl
    def fedllm_node_clients(self, ctx: RunContext) -> dict[str, list[str]] | None:
        if self.grid is None:
            return None  # the simulation has not started: its nodes hold whatever they are sent
        return super().fedllm_node_clients(ctx)

    @hookimpl
    def fedllm_backend_start(self, ctx: RunContext) -> None:
        from flwr.serverapp import ServerApp
        from flwr.simulation import run_simulation

        from .client_app import app as client_app

        c = self.config
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        grids: queue.Queue = queue.Queue()
        self._stop = threading.Event()
        self._error: list[BaseException] = []
        server = ServerApp()

        @server.main()
        def _main(grid, context) -> None:
            grids.put(grid)
            self._stop.wait()

        def _run() -> None:
            try:
                run_simulation(server_app=server, client_app=client_app,
                               num_supernodes=c.num_supernodes, backend_config={
                                   "client_resources": {"num_cpus": c.cpus_per_node,
                                                        "num_gpus": c.gpus_per_node},
                                   "init_args": {"num_cpus": c.cpus, "include_dashboard": False}},
                               )
            except BaseException as exc:  # noqa: BLE001 - reported to the engine thread
                self._error.append(exc)
            finally:
                grids.put(None)

        self._thread = threading.Thread(target=_run, name="flower-sim", daemon=True)
        self._thread.start()
        grid = grids.get()
        if grid is None:
            raise FedLLMError(f"Flower simulation failed to start: {self._error[:1]}")
        self.grid = grid
        super().fedllm_backend_start(ctx)

    def expected_nodes(self) -> int:
        return self.config.num_nodes or self.config.num_supernodes

    @hookimpl
    def fedllm_backend_close(self, ctx: RunContext) -> None:
        if getattr(self, "_stop", None) is not None:
            self._stop.set()
            self._thread.join(timeout=120)


plugin = Plugin(kind="backend", name="flower-sim", factory=SimBackend, Config=SimConfig,
                description="Flower's simulation engine (Ray): virtual SuperNodes on this "
                "machine.")
