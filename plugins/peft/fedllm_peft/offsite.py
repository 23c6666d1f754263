"""Federated offsite-tuning (FedOT, FS-LLM §4.2 after Xiao et al.): clients never hold the
full model.

* **Emulator.** The server splits the base model's decoder blocks into the *adapter* (the
  first and the last ``adapter_layers`` blocks) and the *middle*; it drops ``drop`` of the
  middle blocks, uniformly spread, and saves what is left (adapter + kept middle blocks,
  embeddings, head, tokenizer) as a model directory: the emulator. FS-LLM drops 20% or 50%.
* **Clients** load only the emulator (this component's ``fedllm_model_path``): the core loads
  that directory instead of ``model.name_or_path``, so the full weights never enter a client
  process. They train the adapter blocks: ``tune: full`` trains every weight of those blocks
  (FS-LLM's and the paper's setting; peft's LN-tuning wrapper, which trains a copy of any
  module, here whole decoder blocks), ``tune: lora`` trains LoRA matrices in them. Only the
  adapter blocks' trainable tensors travel; the frozen middle never changes.
* **The server** plugs the aggregated adapter back into the full model to evaluate it and to
  save the final adapter (``fedllm_server_model``): emulator block ``E-k+j`` is full block
  ``L-k+j``. The saved adapter is a standard peft adapter *of the full model*
  (``LN_TUNING`` or ``LORA``, base ``model.name_or_path``): ``PeftModel.from_pretrained``
  loads it on the full model, and ``fedllm eval ADAPTER_DIR`` rebuilds it with the
  ``ln-tuning`` or ``lora`` component.

The emulator is built once, by the first process that needs it, into
``$FEDLLM_HOME/emulators/<key>/`` (key: model, revision, dtype and the kept blocks). In a
deployment, build it on the server (any run there does) and give the nodes its directory as
``peft.emulator``; with ``emulator`` set the component never builds, so a node never needs
the full model's weights.

Supported algorithms: all of fedllm's (fedavg, local, fedprox, scaffold, fedavgm,
fedadagrad, fedyogi, fedadam): the adapter blocks' tensors are averaged by name.
``fedllm eval RUN_DIR`` is not supported for offsite runs (the run's saved adapter belongs to
the full model): evaluate ``RUN_DIR/adapter`` instead.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from fedllm import Peft, Plugin, PluginConfig, hookimpl
from fedllm.errors import ConfigError, FedLLMError

from .base import Targets, targets_field, wrap

if TYPE_CHECKING:
    from fedllm.context import RunContext
    from fedllm.messages import Params

EMULATOR_FILE = "fedllm_emulator.json"
EMULATOR_VERSION = 1


class OffsiteConfig(PluginConfig):
    adapter_layers: int = Field(2, ge=1, description="k: the first and the last k decoder "
                                "blocks are the adapter clients train (FS-LLM: 2).")
    drop: float = Field(0.2, ge=0, lt=1, description="Share of the middle blocks the emulator "
                        "drops, uniformly spread (FS-LLM: 0.2 or 0.5).")
    tune: Literal["full", "lora"] = Field(
        "full", description="Train the adapter blocks' every weight (full, as FS-LLM) or LoRA "
        "matrices in them (lora).")
    r: int = Field(8, ge=1, description="LoRA rank (tune: lora).")
    alpha: int = Field(16, ge=1, description="LoRA alpha (tune: lora).")
    dropout: float = Field(0.05, ge=0, lt=1, description="LoRA dropout (tune: lora).")
    target_modules: Targets = targets_field(["q_proj", "v_proj"], "adapt with LoRA in the "
                                            "adapter blocks (tune: lora)")
    emulator: str | None = Field(
        None, description="Directory of an emulator built by the server (what deployment "
        "nodes load; never built when given). None: build it once into the fedllm cache.")


def plan(num_layers: int, k: int, drop: float) -> tuple[list[int], list[int]]:
    """``(kept, adapter)``: the full model's block indices the emulator keeps, in order, and
    which of them are adapter blocks. The middle ``num_layers - 2k`` blocks keep
    ``round(middle * (1 - drop))`` of themselves at evenly spaced positions."""
    middle = list(range(k, num_layers - k))
    n_keep = round(len(middle) * (1 - drop))
    kept_mid = [middle[int((i + 0.5) * len(middle) / n_keep)] for i in range(n_keep)]
    adapter = [*range(k), *range(num_layers - k, num_layers)]
    return sorted({*adapter, *kept_mid}), adapter


def decoder_layers(model: Any) -> tuple[str, Any]:
    """``(dotted name, ModuleList)`` of the model's decoder blocks."""
    import torch

    n = getattr(model.config, "num_hidden_layers", None)
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == n and \
                name.rsplit(".", 1)[-1] in ("layers", "h", "blocks"):
            return name, module
    raise ConfigError(f"peft offsite: cannot find the decoder blocks of this "
                      f"{type(model).__name__} (a ModuleList of num_hidden_layers={n} blocks "
                      "named layers, h or blocks)")


def build_emulator(source: str, target: Path, kept: list[int], *, dtype: Any = "auto",
                   revision: str | None = None, info: dict[str, Any] | None = None) -> Path:
    """Save the emulator of the model at ``source`` (full blocks ``kept``, in order) with its
    tokenizer into ``target``, atomically. Loads the full model once, on the CPU."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from fedllm.paths import atomic_dir

    if isinstance(dtype, str) and dtype != "auto":
        dtype = getattr(torch, dtype)
    model = AutoModelForCausalLM.from_pretrained(source, revision=revision, dtype=dtype)
    prefix, layers = decoder_layers(model)
    parent = model.get_submodule(prefix.rsplit(".", 1)[0]) if "." in prefix else model
    setattr(parent, prefix.rsplit(".", 1)[-1], torch.nn.ModuleList([layers[i] for i in kept]))
    cfg = model.config
    types = getattr(cfg, "layer_types", None)
    cfg.num_hidden_layers = len(kept)
    if isinstance(types, list) and len(types) == len(layers):
        cfg.layer_types = [types[i] for i in kept]
    with atomic_dir(target, replace=False) as tmp:
        model.save_pretrained(str(tmp))
        AutoTokenizer.from_pretrained(source, revision=revision).save_pretrained(str(tmp))
        (tmp / EMULATOR_FILE).write_text(json.dumps(
            {"version": EMULATOR_VERSION, "source": source, "revision": revision,
             "num_layers": len(layers), "kept": kept, "prefix": prefix, **(info or {})},
            indent=2))
    return target


class Offsite(Peft):
    """Trains the adapter blocks of an emulator; the server plugs them into the full model."""

    def __init__(self, config: OffsiteConfig):
        self.config = config
        self._server: Any = None  # the full model, wrapped, once the server needs it
        self._map: dict[int, int] = {}  # emulator block -> full block (adapter blocks)

    # -- planning ---------------------------------------------------------------------------

    def _plan(self, num_layers: int) -> tuple[list[int], list[int]]:
        return plan(num_layers, self.config.adapter_layers, self.config.drop)

    @hookimpl
    def fedllm_check(self, ctx: RunContext) -> list[str] | None:
        c = self.config
        n = ctx.model_info.num_hidden_layers if ctx.model_info else None
        problems = []
        if n is not None:
            if 2 * c.adapter_layers >= n:
                problems.append(f"peft.adapter_layers: {c.adapter_layers} first and last "
                                f"blocks leave no middle of this {n}-block model to emulate "
                                f"(allowed: 1..{(n - 1) // 2})")
            elif len(self._plan(n)[0]) == n:
                problems.append(f"peft.drop: {c.drop} of the {n - 2 * c.adapter_layers} "
                                "middle blocks drops none; raise it (FS-LLM: 0.2 or 0.5)")
        if c.tune == "full" and ctx.config.model.quantization != "none":
            problems.append(f"peft.tune: 'full' trains the adapter blocks' own weights, which "
                            f"model.quantization={ctx.config.model.quantization!r} freezes "
                            "in bitsandbytes; use tune: lora (or quantization: none)")
        if c.emulator and not (Path(c.emulator) / EMULATOR_FILE).is_file():
            problems.append(f"peft.emulator: {c.emulator!r} is not an emulator directory "
                            f"(no {EMULATOR_FILE}); build one on the server or leave it unset")
        return problems

    # -- the client's model -----------------------------------------------------------------

    def _emulator_dir(self, ctx: RunContext) -> Path:
        from fedllm.model import resolve_path
        from fedllm.paths import fedllm_home

        if self.config.emulator:
            path = Path(self.config.emulator)
            if not (path / EMULATOR_FILE).is_file():
                raise ConfigError(f"peft.emulator: {str(path)!r} is not an emulator directory "
                                  f"(no {EMULATOR_FILE})")
            return path
        m = ctx.config.model
        source = resolve_path(m)
        n = ctx.model_info.num_hidden_layers
        kept, adapter = self._plan(n)
        key = hashlib.sha256(json.dumps(
            [EMULATOR_VERSION, str(Path(source).resolve()) if Path(source).exists() else source,
             m.revision, m.dtype, kept], sort_keys=True).encode()).hexdigest()[:16]
        path = fedllm_home() / "emulators" / key
        if not (path / EMULATOR_FILE).is_file():
            ctx.console.print(f"offsite: building the emulator of {m.name_or_path} "
                              f"({len(kept)} of {n} blocks) in {path}", highlight=False)
            dtype: Any = "auto" if m.dtype == "auto" else m.dtype
            try:
                build_emulator(source, path, kept, dtype=dtype, revision=m.revision,
                               info={"adapter": adapter})
            except OSError:
                if not (path / EMULATOR_FILE).is_file():  # not a lost race with a twin
                    raise
        return path

    def _emulator_info(self, ctx: RunContext) -> dict[str, Any]:
        path = self._emulator_dir(ctx)
        return json.loads((path / EMULATOR_FILE).read_text())

    @hookimpl
    def fedllm_model_path(self, ctx: RunContext) -> str | None:
        return str(self._emulator_dir(ctx))

    def _peft_config(self, prefix: str, blocks: list[int]) -> Any:
        import peft

        c = self.config
        if c.tune == "full":
            return peft.LNTuningConfig(target_modules=[f"{prefix}.{i}" for i in blocks],
                                       task_type="CAUSAL_LM")
        return peft.LoraConfig(r=c.r, lora_alpha=c.alpha, lora_dropout=c.dropout,
                               target_modules=c.target_modules, layers_to_transform=blocks,
                               task_type="CAUSAL_LM")

    @hookimpl
    def fedllm_wrap_model(self, ctx: RunContext, model: Any) -> Any:
        info = self._emulator_info(ctx)
        kept, k = info["kept"], self.config.adapter_layers
        full_adapter = [*range(k), *range(info["num_layers"] - k, info["num_layers"])]
        self._map = {kept.index(f): f for f in full_adapter}
        prefix, _ = decoder_layers(model)
        return wrap(model, self._peft_config(prefix, sorted(self._map)),
                    value=self.config.target_modules)

    # -- the server's model -----------------------------------------------------------------

    def _full_name(self, name: str, prefix: str) -> str:
        def swap(m: re.Match) -> str:
            e = int(m.group(2))
            if e not in self._map:
                raise FedLLMError(f"peft offsite: trainable tensor {name!r} is in emulator "
                                  f"block {e}, which is not an adapter block")
            return f"{m.group(1)}{prefix}.{self._map[e]}."

        return re.sub(r"(^|\.)" + re.escape(prefix) + r"\.(\d+)\.", swap, name, count=1)

    def _full_model(self, ctx: RunContext) -> Any:
        if self._server is None:
            import torch

            from fedllm.model import load_model

            base = load_model(ctx.config.model, ctx.device)
            prefix, _ = decoder_layers(base)
            with torch.random.fork_rng(devices=[]):  # the run's own draws stay as they are
                torch.manual_seed(ctx.config.seed)
                model = wrap(base, self._peft_config(prefix, sorted(self._map.values())),
                             value=self.config.target_modules)
            trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
            names = {self._full_name(n, prefix): n for n in ctx.trainable}
            if set(names) != set(trainable):
                odd = sorted(set(names) ^ set(trainable))[:3]
                raise FedLLMError(f"peft offsite: the emulator's adapter does not map onto the "
                                  f"full model (unmatched {odd})")
            self._server = (model, {names[f]: p for f, p in trainable.items()})
        return self._server

    @hookimpl
    def fedllm_server_model(self, ctx: RunContext, params: Params | None) -> Any:
        import torch

        model, into = self._full_model(ctx)
        source = params if params is not None else ctx.get_params()
        with torch.no_grad():
            for name, p in into.items():
                p.copy_(source[name])
        return model


plugin = Plugin(kind="peft", name="offsite", factory=Offsite, Config=OffsiteConfig,
                description="Federated offsite-tuning (FedOT): clients train the first/last k "
                "blocks of an emulator with a share of the middle dropped; the server plugs "
                "them into the full model; all algorithms.")
