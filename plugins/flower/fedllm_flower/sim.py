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
from typing import Any

from pydantic import Field

from fedllm import Plugin
from fedllm.context import RunContext
from fedllm.errors import FedLLMError

from .grid_backend import GridBackend, GridConfig


class SimConfig(GridConfig):
    num_supernodes: int = Field(2, ge=1, description="Virtual SuperNodes (clients are "
                                "assigned to them round-robin).")
    cpus: int = Field(2, ge=1, description="CPUs Ray may use in all.")
    cpus_per_node: float = Field(1.0, gt=0, description="CPUs reserved per running ClientApp.")
    gpus_per_node: float = Field(0.0, ge=0, description="GPUs reserved per running ClientApp.")


class SimBackend(GridBackend):
    def start(self, ctx: RunContext) -> None:
        if importlib.util.find_spec("ray") is None:
            raise FedLLMError("runtime.backend 'flower-sim' needs Flower's simulation extra "
                              "(Ray): pip install 'fedllm-flower[simulation]' (or "
                              "'flwr[simulation]'); or use runtime.backend=in-process")
        self.preflight(ctx)
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
        super().start(ctx)

    def expected_nodes(self) -> int:
        return self.config.num_nodes or self.config.num_supernodes

    def close(self) -> None:
        if getattr(self, "_stop", None) is not None:
            self._stop.set()
            self._thread.join(timeout=120)


plugin = Plugin(kind="backend", name="flower-sim", factory=SimBackend, Config=SimConfig,
                description="Flower's simulation engine (Ray): virtual SuperNodes on this "
                "machine.")
