"""``fedllm push RUN_DIR REPO_ID``: the run's final adapter to the Hugging Face Hub (or a local
folder), with a generated model card recording the config, plugin versions, data and
evaluation results.

Uploads go through ``huggingface_hub.HfApi`` (``create_repo`` + ``upload_folder``, one commit);
``--endpoint`` points it at another Hub (a mirror, or a stub on 127.0.0.1 in tests). Nothing is
sent before the folder is complete, and ``--to-dir`` only writes what would be uploaded.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from fedllm.card import model_card
from fedllm.errors import FedLLMError, RunDirError

from .results import read_run

ADAPTER_FILES = ("adapter_model.safetensors", "adapter_config.json")


def _adapters(run: Path) -> dict[str, Path]:
    if (run / "adapter" / ADAPTER_FILES[0]).is_file():
        return {"": run / "adapter"}
    multi = run / "adapters"
    if multi.is_dir():
        return {p.name: p for p in sorted(multi.iterdir()) if (p / ADAPTER_FILES[0]).is_file()}
    return {}


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
    card = model_card(run["config"], run["records"], title=repo_id.split("/")[-1],
                      adapter=repo_id)
    (target / "README.md").write_text(card, encoding="utf-8")
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
