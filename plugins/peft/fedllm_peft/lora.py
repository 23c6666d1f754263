"""LoRA through peft: only the low-rank A/B matrices are trainable, so only they travel."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field

from fedllm import Peft, Plugin, PluginConfig, hookimpl
from fedllm.errors import ConfigError

if TYPE_CHECKING:
    from fedllm.context import RunContext


class LoraConfig(PluginConfig):
    r: int = Field(16, ge=1, description="Rank of the update matrices.")
    alpha: int = Field(32, ge=1, description="Scaling numerator (lora_alpha).")
    dropout: float = Field(0.05, ge=0, lt=1, description="Dropout on the LoRA input.")
    target_modules: list[str] | str | None = Field(
        ["q_proj", "v_proj"], description="Module names to adapt ('all-linear', a list, or "
        "None for peft's per-architecture default).")
    bias: str = Field("none", pattern="^(none|all|lora_only)$")
    use_rslora: bool = False


class Lora(Peft):
    peft_types = ("LORA",)

    def __init__(self, config: LoraConfig):
        self.config = config

    @hookimpl
    def fedllm_config_from_adapter(self, adapter_config: dict[str, Any]) -> dict[str, Any] | None:
        targets = adapter_config.get("target_modules")
        return {"name": "lora", "r": adapter_config["r"],
                "alpha": adapter_config["lora_alpha"], "dropout": 0.0,
                "target_modules": sorted(targets) if isinstance(targets, list) else targets,
                "use_rslora": bool(adapter_config.get("use_rslora", False))}

    @hookimpl
    def fedllm_wrap_model(self, ctx: RunContext, model: Any) -> Any:
        import peft

        c = self.config
        cfg = peft.LoraConfig(r=c.r, lora_alpha=c.alpha, lora_dropout=c.dropout,
                              target_modules=c.target_modules, bias=c.bias,
                              use_rslora=c.use_rslora, task_type="CAUSAL_LM")
        try:
            return peft.get_peft_model(model, cfg)
        except ValueError as exc:
            names = sorted({n.rsplit(".", 1)[-1] for n, _ in model.named_modules() if n})
            raise ConfigError(f"peft.target_modules: {c.target_modules!r} does not fit this "
                              f"model ({exc}); its module names include "
                              f"{', '.join(names[:20])}") from None


plugin = Plugin(kind="peft", name="lora", factory=Lora, Config=LoraConfig,
                description="LoRA adapters (peft): r, alpha, dropout, target modules.")
