"""The aggregate's guard: what one client sends cannot poison the global model.

Every update is checked before any algorithm or privacy mechanism folds it: a non-finite tensor
(in ``params`` or in tensors of ``extras``) or a non-finite training loss rejects it, and an
optional bound on ‖θ_k − θ_t‖ (``guard.max_update_norm``) rejects or clips outliers, whatever
the algorithm. Rejections are recorded per client in ``metrics.jsonl``.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .config import GuardConfig
    from .messages import ClientUpdate, Params


def _tensors(obj: Any, path: str = ""):
    if hasattr(obj, "isfinite") and hasattr(obj, "shape"):
        yield path, obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from _tensors(v, f"{path}.{k}" if path else str(k))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from _tensors(v, f"{path}.{i}")


def nonfinite(update: ClientUpdate) -> str | None:
    """Why ``update`` is not finite (the first offending tensor or metric), or ``None``."""
    for name, t in _tensors({"params": update.params, "extras": update.extras}):
        if t.is_floating_point() and not bool(t.isfinite().all()):
            bad = int((~t.isfinite()).sum())
            return f"non-finite values in {name} ({bad} of {t.numel()} entries)"
    for m in update.clients():  # the losses (other metrics, e.g. ε = inf, may be infinite)
        for k, v in (m.get("metrics") or {}).items():
            if k.endswith("loss") and isinstance(v, float) and not math.isfinite(v):
                return f"non-finite {k} ({v})"
    return None


def update_norm(update: ClientUpdate, global_params: Params) -> float:
    """‖θ_k − θ_t‖ over every adapter tensor, in float64."""
    return math.sqrt(sum(float((update.params[k].double() - v.double()).pow(2).sum())
                         for k, v in global_params.items()))


def screen(update: ClientUpdate, global_params: Params,
           cfg: GuardConfig) -> tuple[ClientUpdate | None, str | None, float | None]:
    """``(update to fold or None, why it was rejected or clipped, its norm)``."""
    why = nonfinite(update)
    if why is not None:
        return None, why, None
    if cfg.max_update_norm is None:
        return update, None, None
    norm = update_norm(update, global_params)
    if norm <= cfg.max_update_norm:
        return update, None, norm
    if cfg.action == "reject":
        return None, f"update norm {norm:.4g} exceeds guard.max_update_norm=" \
                     f"{cfg.max_update_norm:g}", norm
    scale = cfg.max_update_norm / norm
    update.params = {k: (global_params[k].float() + scale * (update.params[k].float()
                                                            - global_params[k].float())
                         ).to(update.params[k].dtype) for k in global_params}
    return update, f"clipped from norm {norm:.4g} to {cfg.max_update_norm:g}", norm


def finite_json(obj: Any) -> Any:
    """``obj`` with every non-finite float replaced by ``None`` (``metrics.jsonl`` stays JSON)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_json(v) for v in obj]
    return obj
