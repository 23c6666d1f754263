"""``fedllm push RUN_DIR REPO_ID``: the run's final adapter to the Hugging Face Hub (or a local
folder), with a generated model card recording the config, plugin versions, data and
evaluation results.

Uploads go through ``huggingface_hub.HfApi`` (``create_repo`` + ``upload_folder``, one commit);
``--endpoint`` points it at another Hub (a mirror, or a stub on 127.0.0.1 in tests). Nothing is
sent before the folder is complete, and ``--to-dir`` only writes what would be uploaded.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import yaml

from fedllm.errors import FedLLMError, RunDirError

from .results import final_eval, read_run

ADAPTER_FILES = ("adapter_model.safetensors", "adapter_config.json")


def _adapters(run: Path) -> dict[str, Path]:
    if (run / "adapter" / ADAPTER_FILES[0]).is_file():
        return {"": run / "adapter"}
    multi = run / "adapters"
    if multi.is_dir():
        return {p.name: p for p in sorted(multi.iterdir()) if (p / ADAPTER_FILES[0]).is_file()}
    return {}


def _scores(evals: dict[str, Any]) -> list[tuple[str, str, str, float]]:
    out = []
    for cohort, res in evals.items():
        for ev, scores in (res or {}).items():
            for k, v in (scores or {}).items():
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    out.append((cohort, ev, k, float(v)))
    return out


def model_card(run: dict[str, Any], repo_id: str) -> str:
    """README.md for the pushed adapter: front matter the Hub reads, then what was run."""
    cfg = run["config"]
    records = run["records"]
    model = cfg.get("model") or {}
    base = model.get("name_or_path")
    dataset = cfg.get("dataset") or {}
    evals = final_eval(records)
    scores = _scores(evals)
    front: dict[str, Any] = {
        "library_name": "peft", "tags": ["fedllm", "federated-learning", "lora",
                                         f"fedllm-{(cfg.get('algorithm') or {}).get('name')}"],
        "pipeline_tag": "text-generation"}
    if base and base != "tiny" and not Path(str(base)).exists():
        front["base_model"] = base
    if scores:
        front["model-index"] = [{"name": repo_id.split("/")[-1], "results": [{
            "task": {"type": "text-generation"},
            "dataset": {"name": str(dataset.get("name")), "type": str(dataset.get("name"))},
            "metrics": [{"name": f"{ev} {k}" + ("" if c == "global" else f" [{c}]"),
                         "type": f"{ev}/{k}", "value": round(v, 6)} for c, ev, k, v in scores]}]}]
    sampled = {cid for rec in records for coh in (rec.get("cohorts") or {}).values()
               for cid in coh.get("sampled", [])}
    lines = ["---", yaml.safe_dump(front, sort_keys=False).rstrip(), "---", "",
             f"# {repo_id.split('/')[-1]}", "",
             f"A LoRA adapter for `{base}`"
             + (f" (revision `{model.get('revision')}`)" if model.get("revision") else "")
             + f", trained by federated learning with [fedllm](https://pypi.org/project/fedllm/): "
             f"algorithm `{(cfg.get('algorithm') or {}).get('name')}`, "
             f"{len(records)} rounds of {cfg.get('clients_per_round')} sampled clients.", "",
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
    lines += [f"| {k} | {v} |" for k, v in (cfg.get("plugins") or {}).items()]
    lines += ["", "## Training configuration", "", "The resolved `config.yaml` of the run "
              "(every default filled in):", "", "```yaml",
              yaml.safe_dump(cfg, sort_keys=False).rstrip(), "```", "",
              "## Use", "", "```python", "from peft import PeftModel",
              "from transformers import AutoModelForCausalLM", "",
              f"base = AutoModelForCausalLM.from_pretrained({base!r})",
              f"model = PeftModel.from_pretrained(base, {repo_id!r})", "```", ""]
    return "\n".join(lines)


def stage(run_dir: str | Path, repo_id: str, target: Path) -> Path:
    """Write the repository's files into ``target``: adapter(s), README.md, config, metrics."""
    run = read_run(run_dir)
    adapters = _adapters(run["path"])
    if not adapters:
        raise RunDirError(f"{str(run_dir)!r} has no final adapter (adapter/ or adapters/); "
                          "finish the run first (fedllm run --resume)")
    target.mkdir(parents=True, exist_ok=True)
    for sub, src in adapters.items():
        dst = target / sub if sub else target
        dst.mkdir(parents=True, exist_ok=True)
        for f in src.iterdir():
            if f.is_file():
                shutil.copy2(f, dst / f.name)
    (target / "README.md").write_text(model_card(run, repo_id), encoding="utf-8")
    shutil.copy2(run["path"] / "config.yaml", target / "fedllm_config.yaml")
    shutil.copy2(run["path"] / "metrics.jsonl", target / "fedllm_metrics.jsonl")
    return target


def push(run_dir: str | Path, repo_id: str, *, private: bool = False, token: str | None = None,
         endpoint: str | None = None, revision: str | None = None,
         message: str | None = None) -> str:
    """Create the repo if needed and upload the staged folder in one commit; returns its URL."""
    import tempfile

    from huggingface_hub import HfApi, constants
    from huggingface_hub.errors import HfHubHTTPError

    if constants.HF_HUB_OFFLINE:
        raise FedLLMError("HF_HUB_OFFLINE=1 forbids uploading: run `HF_HUB_OFFLINE=0 fedllm push "
                          "...`, or write the files with --to-dir")

    api = HfApi(endpoint=endpoint, token=token)
    with tempfile.TemporaryDirectory(prefix="fedllm-push-") as tmp:
        folder = stage(run_dir, repo_id, Path(tmp) / "repo")
        try:
            api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
            info = api.upload_folder(folder_path=str(folder), repo_id=repo_id,
                                     repo_type="model", revision=revision,
                                     commit_message=message or
                                     f"fedllm: adapter of run {Path(run_dir).name}")
        except HfHubHTTPError as exc:
            raise FedLLMError(f"push to {repo_id!r} failed: {exc}") from None
    return str(getattr(info, "commit_url", info))
