"""Prompt-learning methods through peft: prompt tuning, p-tuning and prefix tuning.

What travels: the virtual-token embeddings (``prompt_encoder.default.embedding.weight``) and,
for p-tuning and projected prefixes, the weights of the reparametrising encoder (FS-LLM sends
the encoder too: its Table 3 message sizes). See :class:`fedllm_peft.base.PromptLearning` for
how the virtual tokens line up with labels and masks, and how saved adapters load.

Supported algorithms: all of fedllm's (fedavg, local, fedprox, scaffold, fedavgm, fedadagrad,
fedyogi, fedadam): the tensors are plain parameters averaged by name. Averaging a p-tuning
encoder averages its MLP/LSTM weights, not its outputs (as FS-LLM does).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from fedllm import Plugin, PluginConfig, hookimpl

from .base import PromptLearning

if TYPE_CHECKING:
    from fedllm.context import RunContext


class _PromptConfig(PluginConfig):
    num_virtual_tokens: int = Field(20, ge=1, description="Virtual tokens prepended to every "
                                    "sequence (they count towards the model's context).")


class PromptTuningConfig(_PromptConfig):
    init: Literal["random", "text", "sample_vocab"] = Field(
        "random", description="Initial embeddings: random, the embeddings of init_text, or "
        "embeddings of random vocabulary tokens.")
    init_text: str | None = Field(None, description="Text whose token embeddings initialise "
                                  "the prompt (init: text).")


class PTuningConfig(_PromptConfig):
    encoder: Literal["MLP", "LSTM"] = Field(
        "MLP", description="Reparametrisation of the virtual tokens (peft's "
        "encoder_reparameterization_type).")
    encoder_hidden_size: int | None = Field(None, ge=1, description="Hidden size of the "
                                            "encoder (None: the model's hidden size).")
    encoder_num_layers: int = Field(2, ge=1, description="LSTM layers (encoder: LSTM).")
    encoder_dropout: float = Field(0.0, ge=0, lt=1)


class PrefixTuningConfig(_PromptConfig):
    prefix_projection: bool = Field(False, description="Reparametrise the prefix through a "
                                    "two-layer MLP (the prefix-tuning paper's trick).")
    encoder_hidden_size: int | None = Field(None, ge=1, description="Hidden size of the "
                                            "projection MLP (None: the model's hidden size).")


def _context_problem(ctx: RunContext, tokens: int, what: str) -> list[str]:
    """The virtual tokens plus the task's longest sample must fit the model's context."""
    limit = ctx.model_info.max_position_embeddings if ctx.model_info else None
    try:
        task_cfg = ctx.resolved.one("task")[1]
    except Exception:  # noqa: BLE001 - no task section: nothing to compare
        return []
    longest = getattr(task_cfg, "max_length", None)
    if limit and longest and longest + tokens > limit:
        return [f"peft.num_virtual_tokens: {tokens} virtual tokens ({what}) + task.max_length "
                f"{longest} exceed the model's context of {limit} tokens; lower one of them"]
    return []


def _hidden(model: Any) -> int:
    return int(model.config.hidden_size)


class PromptTuning(PromptLearning):
    """Prompt tuning (Lester et al.): trainable embeddings of virtual tokens, nothing else."""

    peft_types = ("PROMPT_TUNING",)

    def build(self, ctx: RunContext, model: Any) -> Any:
        import peft

        from fedllm.model import resolve_path

        c = self.config
        kw: dict[str, Any] = {"prompt_tuning_init": c.init.upper()}
        if c.init == "text":
            kw.update(prompt_tuning_init_text=c.init_text,
                      tokenizer_name_or_path=resolve_path(ctx.config.model))
        return peft.PromptTuningConfig(num_virtual_tokens=c.num_virtual_tokens,
                                       task_type="CAUSAL_LM", **kw)

    @hookimpl
    def fedllm_check(self, ctx: RunContext) -> list[str] | None:
        problems = _context_problem(ctx, self.config.num_virtual_tokens, "prepended embeddings")
        if self.config.init == "text" and not self.config.init_text:
            problems.append("peft.init_text: init 'text' needs the text whose embeddings "
                            "initialise the prompt (got None)")
        return problems

    @hookimpl
    def fedllm_config_from_adapter(self, adapter_config: dict[str, Any]) -> dict[str, Any] | None:
        return {"name": "prompt-tuning",
                "num_virtual_tokens": adapter_config["num_virtual_tokens"]}


class PTuning(PromptLearning):
    """P-tuning (Liu et al.): virtual tokens reparametrised by an MLP or LSTM prompt encoder."""

    peft_types = ("P_TUNING",)
    reparametrised = True

    def build(self, ctx: RunContext, model: Any) -> Any:
        import peft

        c = self.config
        return peft.PromptEncoderConfig(
            num_virtual_tokens=c.num_virtual_tokens, encoder_reparameterization_type=c.encoder,
            encoder_hidden_size=c.encoder_hidden_size or _hidden(model),
            encoder_num_layers=c.encoder_num_layers, encoder_dropout=c.encoder_dropout,
            task_type="CAUSAL_LM")

    @hookimpl
    def fedllm_check(self, ctx: RunContext) -> list[str] | None:
        return _context_problem(ctx, self.config.num_virtual_tokens, "prepended embeddings")

    @hookimpl
    def fedllm_config_from_adapter(self, adapter_config: dict[str, Any]) -> dict[str, Any] | None:
        enc = str(adapter_config.get("encoder_reparameterization_type", "MLP"))
        return {"name": "p-tuning", "num_virtual_tokens": adapter_config["num_virtual_tokens"],
                "encoder": enc.rsplit(".", 1)[-1].upper(),
                "encoder_hidden_size": adapter_config.get("encoder_hidden_size"),
                "encoder_num_layers": adapter_config.get("encoder_num_layers", 2)}


class PrefixTuning(PromptLearning):
    """Prefix tuning (Li & Liang): trainable key/value prefixes for every attention layer."""

    peft_types = ("PREFIX_TUNING",)

    def __init__(self, config: PrefixTuningConfig):
        super().__init__(config)
        self.reparametrised = config.prefix_projection

    def build(self, ctx: RunContext, model: Any) -> Any:
        import peft

        c = self.config
        kw = {"encoder_hidden_size": c.encoder_hidden_size or _hidden(model)} \
            if c.prefix_projection else {}
        return peft.PrefixTuningConfig(num_virtual_tokens=c.num_virtual_tokens,
                                       prefix_projection=c.prefix_projection,
                                       task_type="CAUSAL_LM", **kw)

    @hookimpl
    def fedllm_check(self, ctx: RunContext) -> list[str] | None:
        return _context_problem(ctx, self.config.num_virtual_tokens, "key/value prefixes")

    @hookimpl
    def fedllm_config_from_adapter(self, adapter_config: dict[str, Any]) -> dict[str, Any] | None:
        # a saved prefix holds the projection's outputs: an unprojected prefix of that width
        # is the same prefix, so a bare adapter is rebuilt without the projection
        return {"name": "prefix-tuning",
                "num_virtual_tokens": adapter_config["num_virtual_tokens"],
                "prefix_projection": False}


prompt_tuning = Plugin(kind="peft", name="prompt-tuning", factory=PromptTuning,
                       Config=PromptTuningConfig,
                       description="Prompt tuning (peft): trainable virtual-token embeddings; "
                       "all algorithms.")
p_tuning = Plugin(kind="peft", name="p-tuning", factory=PTuning, Config=PTuningConfig,
                  description="P-tuning (peft): virtual tokens through an MLP/LSTM prompt "
                  "encoder (encoder weights travel); all algorithms.")
prefix_tuning = Plugin(kind="peft", name="prefix-tuning", factory=PrefixTuning,
                       Config=PrefixTuningConfig,
                       description="Prefix tuning (peft): trainable key/value prefixes per "
                       "layer, optional MLP projection; all algorithms.")
