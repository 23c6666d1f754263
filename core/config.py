"""Run configuration: YAML + ``--set`` overrides, validated in two phases.

Phase 1 validates the core's own sections (``RunConfig``); each component section is a mapping
with a ``name``. Phase 2 loads each named plugin and validates the rest of its section with the
plugin's own pydantic ``Config``. Every error of both phases is collected and reported with its
dotted field path, the bad value and what is allowed.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from . import __version__
from .errors import ConfigError, FedLLMError
from .plugins import PluginInfo, load

COMPONENTS_ONE = ("dataset", "task", "peft", "sampler", "algorithm")
COMPONENTS_MANY = ("privacy", "evaluators", "codecs")
#: config section -> plugin kind
SECTION_KIND = {
    "dataset": "dataset",
    "task": "task",
    "peft": "peft",
    "sampler": "sampler",
    "algorithm": "algorithm",
    "privacy": "privacy",
    "evaluators": "evaluator",
    "codecs": "codec",
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class ModelConfig(_Strict):
    name_or_path: str = Field(
        "tiny",
        description="Hugging Face model id or local directory; 'tiny' is the embedded offline "
        "Llama (built once and cached).",
    )
    revision: str | None = Field(None, description="Hub revision (branch, tag or commit).")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "float32", description="dtype of the frozen base weights."
    )
    quantization: Literal["none", "8bit", "4bit"] = Field(
        "none", description="Load the frozen base in 8-bit (LLM.int8) or 4-bit with "
        "bitsandbytes; '4bit' with peft 'lora' is QLoRA (NF4, double quantisation, bf16 "
        "compute on GPUs)."
    )
    quant_type: Literal["nf4", "fp4"] = Field("nf4", description="4-bit data type (QLoRA: nf4).")
    double_quant: bool = Field(True, description="4-bit: quantise the quantisation constants "
                               "too (QLoRA's double quantisation, ~0.4 bit/parameter saved).")
    trust_remote_code: bool = False
    attn_implementation: str | None = Field(None, description="e.g. 'sdpa', 'eager'.")


class TrainConfig(_Strict):
    local_steps: int = Field(10, ge=1, description="Optimizer steps per client per round.")
    batch_size: int = Field(4, ge=1, description="Examples per micro-batch.")
    grad_accum: int = Field(1, ge=1, description="Micro-batches per optimizer step.")
    lr: float = Field(5e-3, gt=0, description="Peak learning rate (cosine across rounds).")
    min_lr: float = Field(1e-6, ge=0, description="Learning rate at the last round.")
    schedule: Literal["cosine", "constant"] = "cosine"
    weight_decay: float = Field(0.0, ge=0)
    max_grad_norm: float | None = Field(None, gt=0, description="Clip gradients (None: off).")
    gradient_checkpointing: bool = Field(
        False, description="Recompute activations in the backward pass instead of keeping "
        "them (non-reentrant, input grads enabled for the frozen base): a 7B client at 1024 "
        "tokens needs it on a 24 GB GPU; ~30% slower steps.")

    @model_validator(mode="after")
    def _lr_order(self) -> "TrainConfig":
        if self.min_lr > self.lr:
            raise ValueError(f"min_lr ({self.min_lr}) must be <= lr ({self.lr})")
        return self


class RuntimeConfig(_Strict):
    backend: str = Field("in-process", description="Where client updates run (fedllm.backends).")
    backend_options: dict[str, Any] = Field(
        default_factory=dict, description="The backend's own options (its plugin Config).")
    device: str = Field("auto", description="'auto', 'cpu', 'cuda', 'cuda:1', 'mps' ...")
    mixed_precision: Literal["no", "bf16", "fp16"] = Field(
        "no", description="Autocast the forward pass in bf16 (GPUs with bf16, or the CPU) or "
        "fp16 (CUDA GPUs; losses scaled by accelerate)."
    )
    threads: int | None = Field(
        None, ge=1, description="torch intra-op threads (None: torch's default)."
    )
    trackers: list[str] = Field(
        default_factory=list, description="Experiment trackers fed through accelerate's "
        "tracker API, e.g. [tensorboard] (offline, under <run>/trackers), wandb, mlflow, "
        "or 'all' installed; [] logs nothing.")


class GuardConfig(_Strict):
    """What the server refuses to fold (any algorithm): non-finite updates always."""

    max_update_norm: float | None = Field(
        None, gt=0, description="Bound on a client's update norm ‖θ_k − θ_t‖ (None: none); "
        "an update beyond it is rejected or clipped (guard.action).")
    action: Literal["reject", "clip"] = Field(
        "reject", description="What happens to an update beyond max_update_norm.")


class RunConfig(_Strict):
    """The core's sections. Component sections are ``{name: ..., <plugin fields>}``."""

    name: str | None = Field(None, description="Run name; default: a timestamp.")
    output_dir: str = Field("runs", description="Parent directory of run directories.")
    seed: int = Field(0, ge=0)
    rounds: int = Field(10, ge=1)
    schedule_rounds: int | None = Field(
        None, ge=1, description="Rounds the run plans for: the cosine learning-rate schedule "
        "and every rule that depends on the run's length (local_steps: dynamic) use it (None: "
        "rounds). Fix it to extend the run later with `--resume RUN --set rounds=N`.")
    clients_per_round: int = Field(3, ge=1, description="K, clients sampled per round.")
    checkpoint_every: int = Field(1, ge=0, description="Rounds between checkpoints (0: never).")
    keep_checkpoints: int = Field(2, ge=1, description="Checkpoints kept; --resume falls "
                                  "back to an older one when the newest is damaged.")
    eval_every: int = Field(5, ge=0, description="Rounds between evaluations (0: at the end only).")
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    runtime: RuntimeConfig = RuntimeConfig()
    guard: GuardConfig = GuardConfig()
    dataset: dict[str, Any] = {"name": "embedded"}
    task: dict[str, Any] = {"name": "sft"}
    peft: dict[str, Any] = {"name": "lora"}
    sampler: dict[str, Any] = {"name": "uniform"}
    algorithm: dict[str, Any] = {"name": "fedavg"}
    privacy: list[dict[str, Any]] = []
    evaluators: list[dict[str, Any]] = [{"name": "heldout-loss"}]
    codecs: list[dict[str, Any]] = Field(
        [], description="Message codecs, a chain in order (fedllm.codecs): "
        "e.g. [{name: int8}, {name: zstd}]; none: messages travel as float32.")
    plugins: dict[str, Any] = Field(
        default_factory=dict,
        description="Written by fedllm: the resolved plugin distributions and versions.",
    )

    @property
    def planned_rounds(self) -> int:
        """The run length that round-count-dependent rules plan for."""
        return self.schedule_rounds or self.rounds

    @field_validator("name")
    @classmethod
    def _safe_name(cls, v: str | None) -> str | None:
        if v is not None and (not v or "/" in v or v.startswith(".")):
            raise ValueError("must be a plain directory name (no '/', not starting with '.')")
        return v

    @field_validator(*COMPONENTS_ONE)
    @classmethod
    def _has_name(cls, v: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(v.get("name"), str) or not v["name"]:
            raise ValueError("needs a 'name' naming the plugin")
        return v

    @field_validator(*COMPONENTS_MANY)
    @classmethod
    def _each_has_name(cls, v: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for i, item in enumerate(v):
            if not isinstance(item.get("name"), str) or not item["name"]:
                raise ValueError(f"item {i} needs a 'name' naming the plugin")
        return v


# --------------------------------------------------------------------------- loading


def load_yaml(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {str(p)!r} does not exist")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {str(p)!r} is not UTF-8 text (byte {exc.start}: "
                          f"{exc.reason}); save it as UTF-8") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {str(p)!r} is not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(p)!r} must hold a mapping, got {type(data).__name__}")
    return data


def apply_override(data: dict[str, Any], assignment: str) -> None:
    """Apply one ``a.b.c=value`` override in place; ``value`` is parsed as YAML.

    Numeric path parts index lists (``evaluators.0.name=...``); missing mappings are created.
    """
    if "=" not in assignment:
        raise ConfigError(f"--set {assignment!r}: expected KEY=VALUE, e.g. rounds=20")
    key, raw = assignment.split("=", 1)
    parts = [p for p in key.strip().split(".")]
    if not all(parts):
        raise ConfigError(f"--set {assignment!r}: empty part in key {key!r}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    node: Any = data
    for i, part in enumerate(parts[:-1]):
        nxt_is_index = parts[i + 1].isdigit()
        if isinstance(node, list):
            idx = int(part) if part.isdigit() else -1
            if idx == len(node):  # one past the end appends a new item
                node.append([] if nxt_is_index else {})
            if not 0 <= idx < len(node):
                raise ConfigError(f"--set {key}: index {part} out of range (list has {len(node)})")
            node = node[idx]
            continue
        if not isinstance(node, dict):
            raise ConfigError(f"--set {key}: {'.'.join(parts[:i])} is not a mapping")
        if part not in node or node[part] is None:
            node[part] = [] if nxt_is_index else {}
        node = node[part]
    last = parts[-1]
    if isinstance(node, list):
        if not last.isdigit():
            raise ConfigError(f"--set {key}: {'.'.join(parts[:-1])} is a list; use an index")
        idx = int(last)
        if idx == len(node):
            node.append(value)
        elif 0 <= idx < len(node):
            node[idx] = value
        else:
            raise ConfigError(f"--set {key}: index {idx} out of range (list has {len(node)})")
    elif isinstance(node, dict):
        node[last] = value
    else:
        raise ConfigError(f"--set {key}: {'.'.join(parts[:-1])} is not a mapping")


def _fmt_loc(prefix: str, loc: tuple[Any, ...]) -> str:
    parts = [prefix] if prefix else []
    parts += [str(x) for x in loc]
    return ".".join(parts) or "(root)"


def _fields_at(model: type[BaseModel] | None, loc: tuple[Any, ...]) -> list[str]:
    """The field names allowed where ``loc`` points (its parent's model), for suggestions."""
    for part in loc[:-1]:
        if model is None or not isinstance(part, str) or part not in model.model_fields:
            return []
        ann = model.model_fields[part].annotation
        inner = [a for a in (ann, *getattr(ann, "__args__", ())) if isinstance(a, type)
                 and issubclass(a, BaseModel)]
        model = inner[0] if inner else None
    return list(model.model_fields) if model is not None else []


def _errors(prefix: str, exc: ValidationError, model: type[BaseModel] | None = None) -> list[str]:
    from .plugins import suggest

    out = []
    for err in exc.errors():
        loc = _fmt_loc(prefix, err["loc"])
        if err["type"] == "extra_forbidden":
            allowed = _fields_at(model, err["loc"])
            key = str(err["loc"][-1]) if err["loc"] else ""
            hint = suggest(key, allowed) if allowed else ""
            listing = f" Allowed keys: {', '.join(allowed)}." if allowed else (
                " See the allowed keys with `fedllm plugins show` or `fedllm run --dry-run`.")
            out.append(f"{loc}: unknown key (value {err['input']!r}).{hint}{listing}")
        else:
            out.append(f"{loc}: {err['msg']} (got {err['input']!r})")
    return out


class ResolvedConfig:
    """A validated run config: core sections + each component's validated config, and the
    loaded plugins (with distribution and version). ``components`` maps each config section
    (and ``backend``) to ``[(plugin info, validated config)]`` in config order."""

    def __init__(self, run: RunConfig, components: dict[str, list[tuple[PluginInfo, Any]]]):
        self.run = run
        self.components = components

    def one(self, section: str) -> tuple[PluginInfo, Any]:
        return self.components[section][0]

    def to_dict(self) -> dict[str, Any]:
        """The fully resolved config (every default filled in), JSON/YAML-serialisable."""
        out = self.run.model_dump(mode="json")
        plugins: dict[str, Any] = {"fedllm": __version__}
        for section, items in self.components.items():
            dumped = []
            for info, cfg in items:
                dumped.append({"name": info.name, **cfg.model_dump(mode="json")})
                plugins[f"{info.kind}:{info.name}"] = f"{info.distribution} {info.version}"
            if section == "backend":
                out["runtime"]["backend_options"] = {k: v for k, v in dumped[0].items()
                                                     if k != "name"}
            else:
                out[section] = dumped if section in COMPONENTS_MANY else dumped[0]
        out["plugins"] = plugins
        return out


def _resolve_one(kind: str, where: str, item: dict[str, Any], errors: list[str],
                 name_field: str | None = None):
    params = {k: v for k, v in item.items() if k != "name"}
    try:
        info = load(kind, item["name"])
    except FedLLMError as exc:
        errors.append(f"{name_field or where + '.name'}: {exc}")
        return None
    try:
        return info, info.loaded.Config.model_validate(params)
    except ValidationError as exc:
        errors.extend(_errors(where, exc, info.loaded.Config))
        return None


def resolve(data: dict[str, Any]) -> ResolvedConfig:
    """Validate a raw config mapping: core sections, then each selected plugin's section."""
    data = copy.deepcopy(data)
    data.pop("plugins", None)  # written by fedllm; never read back as input
    for section in COMPONENTS_ONE:  # `--set peft.r=8` alone keeps the default plugin
        default = RunConfig.model_fields[section].default["name"]
        if isinstance(data.get(section), dict) and "name" not in data[section]:
            data[section]["name"] = default
    errors: list[str] = []
    try:
        run: RunConfig | None = RunConfig.model_validate(data)
    except ValidationError as exc:
        run = None
        errors.extend(_errors("", exc, RunConfig))
    components: dict[str, list[tuple[PluginInfo, Any]]] = {}
    for section, kind in SECTION_KIND.items():
        raw = getattr(run, section) if run is not None else data.get(
            section, RunConfig.model_fields[section].default)
        items = raw if section in COMPONENTS_MANY else [raw]
        if not isinstance(items, list) or not all(isinstance(i, dict) and
                                                  isinstance(i.get("name"), str) for i in items):
            continue  # malformed: phase 1 has said so
        done = [_resolve_one(kind, f"{section}.{i}" if section in COMPONENTS_MANY else section,
                             item, errors) for i, item in enumerate(items)]
        components[section] = [d for d in done if d is not None]
    if run is None:
        raise ConfigError("invalid run config:\n  " + "\n  ".join(errors))
    # the backend's options too, so that --dry-run and `serve` catch them up front
    backend = _resolve_one("backend", "runtime.backend_options",
                           {"name": run.runtime.backend, **run.runtime.backend_options}, errors,
                           name_field="runtime.backend")
    components["backend"] = [backend] if backend else []
    names = [c["name"] for c in run.evaluators]
    if len(set(names)) != len(names):
        errors.append(f"evaluators: each evaluator may appear once (got {names})")
    if errors:
        raise ConfigError("invalid run config:\n  " + "\n  ".join(errors))
    return ResolvedConfig(run, components)


def build_config(path: str | Path | None, overrides: Sequence[str] = (),
                 base: dict[str, Any] | None = None) -> dict[str, Any]:
    """The raw config: the YAML file at ``path`` (or ``base``, e.g. a preset's mapping), then
    every ``--set`` override in order."""
    data = load_yaml(path) if path else copy.deepcopy(base or {})
    for assignment in overrides:
        top = assignment.split("=", 1)[0].split(".", 1)[0].strip()
        if top in COMPONENTS_MANY and top not in data:  # `evaluators.1.name=x` extends defaults
            data[top] = copy.deepcopy(RunConfig.model_fields[top].default)
        apply_override(data, assignment)
    return data


def lr_at(train: TrainConfig, round: int, rounds: int) -> float:
    """The learning rate of 0-based ``round`` in a run that plans ``rounds`` rounds: cosine from
    ``lr`` (round 0) towards ``min_lr`` (SPEC §2), and ``min_lr`` past the plan."""
    if train.schedule == "constant" or rounds <= 0:
        return train.lr
    r = min(round, rounds)
    return train.min_lr + 0.5 * (train.lr - train.min_lr) * (1 + math.cos(math.pi * r / rounds))
