"""LoRA and DoRA through peft: only the low-rank A/B matrices (and DoRA's magnitude vectors)
are trainable, so only they travel.

Supported algorithms: all of fedllm's (fedavg, local, fedprox, scaffold, fedavgm, fedadagrad,
fedyogi, fedadam). Averaging A and B separately is not averaging the products B·A (the
usual federated-LoRA approximation, as in OpenFedLLM and FS-LLM); DoRA averages the magnitude
vectors the same way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field

from fedllm import Plugin, PluginConfig, hookimpl

from .base import PeftMethod, sorted_targets

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
    layers_to_transform: list[int] | None = Field(
        None, description="Adapt only these decoder layers (indices; None: every layer).")


class Lora(PeftMethod):
    peft_types = ("LORA",)
    dora = False

    def build(self, ctx: RunContext, model: Any) -> Any:
        import peft

        c = self.config
        return peft.LoraConfig(r=c.r, lora_alpha=c.alpha, lora_dropout=c.dropout,
                               target_modules=c.target_modules, bias=c.bias,
                               use_rslora=c.use_rslora, use_dora=self.dora,
                               layers_to_transform=c.layers_to_transform,
                               task_type="CAUSAL_LM")

    @hookimpl
    def fedllm_config_from_adapter(self, adapter_config: dict[str, Any]) -> dict[str, Any] | None:
        if bool(adapter_config.get("use_dora", False)) != self.dora:
            return None  # the other one of lora / dora rebuilds it
        layers = adapter_config.get("layers_to_transform")
        return {"name": "dora" if self.dora else "lora", "r": adapter_config["r"],
                "alpha": adapter_config["lora_alpha"], "dropout": 0.0,
                "target_modules": sorted_targets(adapter_config.get("target_modules")),
                "bias": adapter_config.get("bias", "none"),
                "use_rslora": bool(adapter_config.get("use_rslora", False)),
                "layers_to_transform": [layers] if isinstance(layers, int) else layers}


class Dora(Lora):
    """DoRA (weight-decomposed LoRA): peft's ``use_dora``; a magnitude vector per adapted
    module travels beside A and B."""

    dora = True


plugin = Plugin(kind="peft", name="lora", factory=Lora, Config=LoraConfig,
                description="LoRA adapters (peft): r, alpha, dropout, target modules; all "
                "algorithms.")
dora = Plugin(kind="peft", name="dora", factory=Dora, Config=LoraConfig,
              description="DoRA (peft's use_dora): LoRA plus a trained magnitude per adapted "
              "module; all algorithms.")
