"""``runtime.backend: flower-sim``: the same federation on Flower's simulation engine (Ray).

The engine stays in this process and in charge; Flower's ``run_simulation`` runs in a
background thread with a ServerApp whose only job is to hand its ``Grid`` to this backend and
wait until the run closes. ClientApps run in ``workers`` Ray actors that live for the whole run:
each builds its context (frozen base + data) from the config the messages carry once and keeps
it (``client_app.client_context``), so a round's clients train concurrently, one per worker, and
the backend folds their updates in sampling order (the in-process adapter, bit for bit, on CPU
for any number of workers). Every Ray server binds 127.0.0.1 only
(``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, set before Ray is imported).
"""

from __future__ import annotations

import importlib.util
import os
import queue
import sys
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
        out = (super().fedllm_check(ctx) or []) + self.config.problems()
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
        pin_ray_to_loopback()
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        init, per_worker = c.ray_resources()
        if c.gpus_per_worker > 0:
            self._check_gpus(init, per_worker)
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
                               num_supernodes=c.supernodes(), backend_config={
                                   "client_resources": per_worker,
                                   "init_args": {**init, "include_dashboard": False}})
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

    def _check_gpus(self, init: dict[str, float], per_worker: dict[str, float]) -> None:
        import torch

        have = init.get("num_gpus", torch.cuda.device_count() if torch.cuda.is_available()
                        else 0)
        fit = int(have / per_worker["num_gpus"] + 1e-9) if have else 0
        want = self.config.workers or 1
        if fit < want:
            raise FedLLMError(
                f"runtime.backend_options.gpus_per_worker={per_worker['num_gpus']:g}: "
                f"{have:g} GPU(s) hold {fit} worker(s), {want} asked; lower workers or "
                "gpus_per_worker (0.5: two workers per GPU), or use CPU workers "
                "(gpus_per_worker=0)")

    def expected_nodes(self) -> int:
        return self.config.num_nodes or self.config.supernodes()

    @hookimpl
    def fedllm_backend_close(self, ctx: RunContext) -> None:
        if getattr(self, "_stop", None) is not None:
            self._stop.set()
            self._thread.join(timeout=120)


def pin_ray_to_loopback() -> None:
    """Make every Ray server (GCS, raylet, workers, runtime-env agent) listen on 127.0.0.1.
    Ray binds the machine's external address unless its cluster mode is off; the switch is read
    when Ray is imported (``ray_constants.ENABLE_RAY_CLUSTER``), so set both. A value the user
    set in the environment wins."""
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    if "ray" in sys.modules and os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] == "0":
        from ray._private import ray_constants

        ray_constants.ENABLE_RAY_CLUSTER = False


plugin = Plugin(kind="backend", name="flower-sim", factory=SimBackend, Config=SimConfig,
                description="Flower's simulation engine (Ray): a round's clients run "
                "concurrently on `workers` CPU/GPU workers that keep the model loaded; "
                "Ray listens on 127.0.0.1 only.")
