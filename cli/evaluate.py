"""``fedllm eval``: score a finished run (or any saved PEFT adapter) with evaluator plugins.

The model is rebuilt from the run's own config.yaml (same base model, task template and peft
wrapping as in training), the saved adapter is loaded into it, and each evaluator runs exactly
as it does during training; detailed outputs land in ``<run>/eval/<evaluator>.json``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from fedllm.errors import FedLLMError, RunDirError

ADAPTER_FILE = "adapter_model.safetensors"


def _adapters(run: Path) -> dict[str, Path]:
    if (run / "adapter" / ADAPTER_FILE).is_file():
        return {"global": run / "adapter"}
    multi = run / "adapters"
    if multi.is_dir():
        return {p.name: p for p in sorted(multi.iterdir()) if (p / ADAPTER_FILE).is_file()}
    return {}


def _bare_adapter_config(adapter: Path) -> dict[str, Any]:
    cfg = json.loads((adapter / "adapter_config.json").read_text())
    if cfg.get("peft_type") != "LORA":
        raise FedLLMError(f"{adapter}: adapter_config.json has peft_type "
                          f"{cfg.get('peft_type')!r}; `fedllm eval` on a bare adapter supports "
                          "LORA (evaluate the run directory instead)")
    base = cfg.get("base_model_name_or_path")
    if not base:
        raise FedLLMError(f"{adapter}: adapter_config.json names no base_model_name_or_path")
    targets = cfg.get("target_modules")
    return {"model": {"name_or_path": base},
            "peft": {"name": "lora", "r": cfg["r"], "alpha": cfg["lora_alpha"], "dropout": 0.0,
                     "target_modules": sorted(targets) if isinstance(targets, list) else targets,
                     "use_rslora": bool(cfg.get("use_rslora", False))}}


def _expand(overrides: list[str], names: list[str]) -> list[str]:
    """``mt-bench.judge.model=x`` is shorthand for ``evaluators.<i>.judge.model=x``."""
    out = []
    for o in overrides:
        head = o.split("=", 1)[0].split(".", 1)[0]
        out.append(f"evaluators.{names.index(head)}.{o[len(head) + 1:]}"
                   if head in names and "." in o.split("=", 1)[0] else o)
    return out


def evaluate_target(target: str | Path, evaluators: list[str] = (), overrides: list[str] = (),
                    judge_repeats: int | None = None, output: str | Path | None = None,
                    console: Console | None = None) -> dict[str, dict[str, Any]]:
    """Evaluate a run directory or an adapter directory; returns {cohort: {evaluator: scores}}."""
    import yaml
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    from fedllm.config import apply_override, resolve
    from fedllm.context import _call_subset, build_context, setup_runtime
    from fedllm.plugins import load

    console = console or Console(stderr=True)
    target = Path(target)
    round_: int | None = None
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
    needs_data = any(getattr(o, "needs_data", True) for o in ctx.components["evaluators"])
    setup_runtime(ctx, load_data=needs_data)
    results: dict[str, dict[str, Any]] = {}
    for cohort, path in adapters.items():
        state = load_file(str(path / ADAPTER_FILE))
        res = set_peft_model_state_dict(ctx.model, state)
        missing = [k for k in getattr(res, "missing_keys", []) if "lora_" in k]
        if res.unexpected_keys or missing:
            raise FedLLMError(f"{path}: the adapter does not fit the model built from the "
                              f"config (unexpected {res.unexpected_keys[:3]}, missing "
                              f"{missing[:3]})")
        ctx.model.eval()
        results[cohort] = {}
        for (info, _), obj in zip(resolved.components["evaluators"], ctx.components["evaluators"]):
            fn = getattr(obj, "fedllm_evaluate", None)
            if fn is None:
                continue
            console.print(f"evaluating [cyan]{info.name}[/] on {cohort} …", highlight=False)
            results[cohort][info.name] = _call_subset(fn, dict(ctx=ctx, model=ctx.model,
                                                               cohort=cohort, round=round_))
    return results


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
                    t.add_row(cohort, ev, k if sub is None else f"{k}/{sub}",
                              "-" if x is None else (f"{x:.4g}" if isinstance(x, float) else str(x)))
    return t


def register(main: click.Group) -> None:
    @main.command("eval")
    @click.argument("target", type=click.Path(exists=True, file_okay=False))
    @click.option("--evaluator", "evaluators", multiple=True, metavar="NAME",
                  help="Evaluator to run (repeatable); default: the run config's evaluators.")
    @click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                  help="Override config, e.g. --set mt-bench.judge.model=gpt-4o or "
                  "--set evaluators.0.max_samples=10.")
    @click.option("--judge-repeats", type=int, default=None,
                  help="Grade every answer N times; report mean ± sd.")
    @click.option("--output", type=click.Path(file_okay=False), default=None,
                  help="Where eval/<evaluator>.json goes (default: TARGET).")
    @click.option("--json", "as_json", is_flag=True, help="Print the scores as JSON.")
    def eval_cmd(target, evaluators, overrides, judge_repeats, output, as_json) -> None:
        """Score a run directory or a PEFT adapter with evaluator plugins
        (MT-Bench, Vicuna, AdvBench, Ref-GPT4, MMLU, HumanEval ...)."""
        from fedllm.cli.main import console, out

        results = evaluate_target(target, list(evaluators), list(overrides), judge_repeats,
                                  output, console)
        if as_json:
            click.echo(json.dumps(results, indent=2, default=str))
        else:
            out.print(results_table(results))
            out.print(f"details: {Path(output or target) / 'eval'}", highlight=False)
