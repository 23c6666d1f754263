"""The Flower ServerApp of ``fedllm serve``: runs our unchanged engine over the SuperLink's Grid.

``fedllm serve`` writes a request file (raw config or run directory to resume, backend options)
and names it in the app's run config; this app reads it, hands the Grid to the ``flower``
backend and runs :class:`fedllm.engine.Engine` exactly as ``fedllm run`` would.
"""

from __future__ import annotations

import json
import os
import traceback
from pathlib import Path

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

app = ServerApp()

REQUEST_KEY = "fedllm-request"


@app.main()
def main(grid: Grid, context: Context) -> None:
    from fedllm.config import resolve
    from fedllm.context import build_context
    from fedllm.engine import Engine
    from fedllm.output import Console

    from .supernode import fast_object_pulls

    fast_object_pulls()  # the replies' arrays follow their message within milliseconds
    req_path = Path(str(context.run_config[REQUEST_KEY]))
    req = json.loads(req_path.read_text(encoding="utf-8"))
    result_path = Path(req["result"])
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    console = Console(stderr=True)

    def build_ctx(resolved):
        """The run's components, with this ServerApp's Grid given to the flower backend."""
        ctx = build_context(resolved, console=console)
        ctx.backend.obj.use_grid(grid)
        return ctx

    try:
        if req.get("resume"):
            engine = Engine.resume(Path(req["resume"]), console=console, progress=False,
                                   ctx_factory=build_ctx)
        else:
            resolved = resolve(req["config"])
            engine = Engine.new(resolved, ctx=build_ctx(resolved), console=console,
                                progress=False)
        out = engine.run(until_round=req.get("stop_after"))
        result_path.write_text(json.dumps({"run_dir": out["run_dir"]}), encoding="utf-8")
    except Exception as exc:
        from fedllm.errors import FedLLMError

        msg = str(exc) if isinstance(exc, FedLLMError) else traceback.format_exc()
        result_path.write_text(json.dumps({"error": msg, "type": type(exc).__name__}),
                               encoding="utf-8")
        raise
