"""The model card (README.md) saved with every final adapter and uploaded by ``fedllm push``:
Hub front matter, then what was run — config, plugin versions, data, final scores.

Written from the run's ``config.yaml`` mapping and ``metrics.jsonl`` records alone, so a card
can be made again for any run directory without loading a model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml


def final_eval(records: list[dict[str, Any]]) -> dict[str, Any]:
    """``{cohort: {evaluator: scores}}`` of the last evaluated round ({} if none)."""
    for rec in reversed(records):
        if rec.get("eval"):
            return rec["eval"]
    return {}


def _scores(evals: dict[str, Any], cohort: str | None) -> list[tuple[str, str, str, float]]:
    """Numeric top-level scores as (cohort, evaluator, key, value), of one cohort or all."""
    out = []
    for c, res in evals.items():
        if cohort is not None and c != cohort:
            continue
        for ev, scores in (res or {}).items():
            for k, v in (scores or {}).items():
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    out.append((c, ev, k, float(v)))
    return out


def model_card(config: dict[str, Any], records: list[dict[str, Any]], *, title: str,
               adapter: str, cohort: str | None = None) -> str:
    """README.md of an adapter: ``title`` heads it, ``adapter`` is what the usage snippet passes
    to ``PeftModel.from_pretrained`` (a Hub repo id or a path); ``cohort`` limits the scores to
    that cohort's adapter (``None``: every cohort)."""
    model = config.get("model") or {}
    base = model.get("name_or_path")
    dataset = config.get("dataset") or {}
    algorithm = (config.get("algorithm") or {}).get("name")
    peft = (config.get("peft") or {}).get("name")
    scores = _scores(final_eval(records), cohort)
    front: dict[str, Any] = {
        "library_name": "peft",
        "tags": ["fedllm", "federated-learning", str(peft), f"fedllm-{algorithm}"],
        "pipeline_tag": "text-generation"}
    if base and base != "tiny" and not Path(str(base)).exists():  # a Hub id, not a local path
        front["base_model"] = base
    if scores:
        front["model-index"] = [{"name": title, "results": [{
            "task": {"type": "text-generation"},
            "dataset": {"name": str(dataset.get("name")), "type": str(dataset.get("name"))},
            "metrics": [{"name": f"{ev} {k}" + ("" if c == "global" else f" [{c}]"),
                         "type": f"{ev}/{k}", "value": round(v, 6)} for c, ev, k, v in scores]}]}]
    sampled = {cid for rec in records for name, coh in (rec.get("cohorts") or {}).items()
               if cohort is None or name == cohort for cid in coh.get("sampled", [])}
    lines = ["---", yaml.safe_dump(front, sort_keys=False).rstrip(), "---", "",
             f"# {title}", "",
             f"A `{peft}` adapter for `{base}`"
             + (f" (revision `{model.get('revision')}`)" if model.get("revision") else "")
             + (f", cohort `{cohort}`" if cohort and cohort != "global" else "")
             + ", trained by federated learning with [fedllm](https://pypi.org/project/fedllm/): "
             f"algorithm `{algorithm}`, {len(records)} rounds of "
             f"{config.get('clients_per_round')} sampled clients.", "",
             "## Data", "",
             f"Dataset component `{dataset.get('name')}`: "
             + ", ".join(f"{k}={json.dumps(v)}" for k, v in dataset.items() if k != "name"),
             "", f"{len(sampled)} distinct clients took part in training.", "",
             "## Evaluation", ""]
    if scores:
        lines += ["| cohort | evaluator | metric | value |", "|---|---|---|---|"]
        lines += [f"| {c} | {ev} | {k} | {v:.6g} |" for c, ev, k, v in scores]
    else:
        lines.append("No evaluation was recorded.")
    lines += ["", "## Plugin versions", "", "| component | distribution |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in (config.get("plugins") or {}).items()]
    lines += ["", "## Training configuration", "", "The resolved `config.yaml` of the run "
              "(every default filled in):", "", "```yaml",
              yaml.safe_dump(config, sort_keys=False).rstrip(), "```", "",
              "## Use", "", "```python", "from peft import PeftModel",
              "from transformers import AutoModelForCausalLM", "",
              f"base = AutoModelForCausalLM.from_pretrained({base!r})",
              f"model = PeftModel.from_pretrained(base, {adapter!r})", "```", ""]
    return "\n".join(lines)
