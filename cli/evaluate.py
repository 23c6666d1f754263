"""``fedllm eval``: score a finished run (or any saved PEFT adapter) with evaluator plugins.

The model is rebuilt from the run's own config.yaml (same base model, task template and peft
wrapping as in training), the saved adapter is loaded into it, and each evaluator runs exactly
as it does during training (:func:`fedllm.evaluation.evaluate_model`); detailed outputs land
in ``<run>/eval/<evaluator>/final.json``. A bare adapter is rebuilt by the peft component that
declares its ``peft_type``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from fedllm.errors import FedLLMError, RunDirError
from fedllm.output import Console as StderrConsole

ADAPTER_FILE = "adapter_model.safetensors"


def _adapters(run: Path) -> dict[str, Path]:
    if (run / "adapter" / ADAPTER_FILE).is_file():
        return {"global": run / "adapter"}
    multi = run / "adapters"
    if multi.is_dir():
        return {p.name: p for p in sorted(multi.iterdir()) if (p / ADAPTER_FILE).is_file()}
    return {}


def _bare_adapter_config(adapter: Path) -> dict[str, Any]:
    """The model and peft sections that rebuild a saved PEFT adapter: the base model it names
    and the section of the installed peft component that declares its ``peft_type``."""
    from fedllm.plugins import build, installed_names, load

    cfg = json.loads((adapter / "adapter_config.json").read_text())
    kind = cfg.get("peft_type")
    base = cfg.get("base_model_name_or_path")
    if not base:
        raise FedLLMError(f"{adapter}: adapter_config.json names no base_model_name_or_path")
    for name in installed_names("peft"):
        info = load("peft", name)
        if kind in getattr(info.plugin.factory, "peft_types", ()):
            comp = build(info, info.plugin.Config())
            section = comp.call("fedllm_config_from_adapter", adapter_config=cfg)
            if section is not None:
                return {"model": {"name_or_path": base, "revision": cfg.get("revision")},
                        "peft": section}
    raise FedLLMError(f"{adapter}: adapter_config.json has peft_type {kind!r}, which no "
                      "installed peft component rebuilds (their peft_types); evaluate the run "
                      "directory instead")


def _expand(overrides: list[str], names: list[str]) -> list[str]:
    """``mt-bench.judge.model=x`` is shorthand for ``evaluators.<i>.judge.model=x``."""
    out = []
    for o in overrides:
        head = o.split("=", 1)[0].split(".", 1)[0]
        out.append(f"evaluators.{names.index(head)}.{o[len(head) + 1:]}"
                   if head in names and "." in o.split("=", 1)[0] else o)
    return out


def evaluate_target(target: str | Path, evaluators: Sequence[str] = (),
                    overrides: Sequence[str] = (),
                    judge_repeats: int | None = None, output: str | Path | None = None,
                    console: Console | None = None) -> dict[str, dict[str, Any]]:
    """Evaluate a run directory or an adapter directory; returns {cohort: {evaluator: scores}}."""
    import yaml

    from fedllm.config import apply_override, resolve
    from fedllm.context import build_context, load_runtime, prepare
    from fedllm.evaluation import evaluate_model
    from fedllm.plugins import load

    console = console or StderrConsole(stderr=True)
    target = Path(target)
    round_: int | None = None
    bare = False
    if (target / "config.yaml").is_file():
        data = yaml.safe_load((target / "config.yaml").read_text()) or {}
        adapters = _adapters(target)
        if not adapters:
            raise RunDirError(f"{target}: the run has no final adapter (adapter/ or adapters/);"
                              " finish it with `fedllm run --resume` first")
        round_ = int(data.get("rounds", 0)) - 1
    elif (target / "adapter_config.json").is_file():
        data = _bare_adapter_config(target)
        adapters = {"global": target}
        bare = True
    else:
        raise RunDirError(f"{target}: neither a fedllm run directory (config.yaml) nor a PEFT "
                          "adapter directory (adapter_config.json)")
    if evaluators:
        data["evaluators"] = [{"name": n} for n in evaluators]
    names = [e.get("name") for e in data.get("evaluators", [])]
    if not names:
        raise FedLLMError("no evaluator selected: pass --evaluator NAME (see "
                          "`fedllm plugins --kind evaluator`)")
    for o in _expand(list(overrides), names):
        apply_override(data, o)
    if judge_repeats is not None:
        if judge_repeats < 1:
            raise FedLLMError(f"--judge-repeats: must be >= 1 (got {judge_repeats})")
        for i, n in enumerate(names):
            if "judge_repeats" in load("evaluator", n).plugin.Config.model_fields:
                data["evaluators"][i]["judge_repeats"] = judge_repeats
    resolved = resolve(data)
    out_dir = Path(output) if output else target
    ctx = build_context(resolved, console=console, run_dir=out_dir)
    needing = [c.name for c in ctx.plugins.of("evaluator") if c.cap("needs_data")]
    if bare and needing and not any(o.split("=", 1)[0].startswith("dataset")
                                    for o in overrides):
        raise FedLLMError(f"evaluator(s) {', '.join(needing)} score the federation's data, and "
                          f"a bare adapter ({target}) names none: pass the data with --set "
                          "dataset.name=NAME --set dataset.KEY=VALUE (as in the run's config), "
                          "or evaluate the run directory")
    prepare(ctx, load_data=bool(needing))
    load_runtime(ctx)
    results: dict[str, dict[str, Any]] = {}
    for cohort, path in adapters.items():
        load_saved_adapter(ctx.model, path, ctx.trainable)
        results[cohort] = evaluate_model(
            ctx, None, cohort, round_, on_start=lambda c, cohort=cohort: console.print(
                f"evaluating [cyan]{c.name}[/] on {cohort} …", highlight=False))
    return results


def load_saved_adapter(model: Any, path: Path, trainable: dict[str, Any]) -> None:
    """Load the adapter saved in ``path`` into ``model`` (wrapped by the run's peft component)
    with peft's ``set_peft_model_state_dict``; raise if it does not fit."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    res = set_peft_model_state_dict(model, load_file(str(path / ADAPTER_FILE)))
    missing = [k for k in getattr(res, "missing_keys", []) if k in trainable]
    unexpected = list(res.unexpected_keys)
    config = getattr(model, "active_peft_config", None)
    if getattr(config, "is_prompt_learning", False):
        # peft loads a prompt-learning state (the encoder's output embeddings) into the
        # prompt encoder itself, after load_state_dict
        unexpected = [k for k in unexpected if k != "prompt_embeddings"]
        missing = [k for k in missing if not k.startswith("prompt_encoder.")]
    if unexpected or missing:
        raise FedLLMError(f"{path}: the adapter does not fit the model built from the "
                          f"config (unexpected {unexpected[:3]}, missing {missing[:3]})")


def results_table(results: dict[str, dict[str, Any]]) -> Table:
    t = Table(title="fedllm eval")
    for col in ("cohort", "evaluator", "metric", "value"):
        t.add_column(col, justify="right" if col == "value" else "left")
    for cohort, per in results.items():
        for ev, scores in per.items():
            for k, v in (scores or {}).items():
                items = v.items() if isinstance(v, dict) else [(None, v)]
                for sub, x in items:
                    if isinstance(x, bool) or not isinstance(x, (int, float)) and x is not None:
                        continue
                    shown = "-" if x is None else (f"{x:.4g}" if isinstance(x, float)
                                                   else str(x))
                    t.add_row(cohort, ev, k if sub is None else f"{k}/{sub}", shown)
    return t
