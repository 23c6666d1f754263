"""Further peft methods whose trainable state can be averaged across clients: IA3, LoHa, LoKr,
VeRA, LayerNorm tuning, FourierFT and OFT. Each is a thin wrapper over its ``peft`` config.

Why averaging is meaningful for each (every client holds the same parametrisation):

* ``ia3``: per-channel scaling vectors of keys, values and the feed-forward input;
* ``loha`` / ``lokr``: the Hadamard / Kronecker factors (averaged factor by factor, like
  LoRA's A and B);
* ``vera``: the per-layer scaling vectors; the frozen random projections are drawn from
  ``projection_prng_key``, so every client has the very same ones;
* ``ln-tuning``: trained copies of the chosen (LayerNorm) modules;
* ``fourierft``: spectral coefficients at frequencies drawn from ``random_loc_seed`` (the
  same on every client);
* ``oft``: the skew-symmetric generators of the orthogonal blocks (a mean of skew-symmetric
  matrices is skew-symmetric, so the averaged adapter is still orthogonal).

Supported algorithms: all of fedllm's (fedavg, local, fedprox, scaffold, fedavgm, fedadagrad,
fedyogi, fedadam).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field

from fedllm import Plugin, PluginConfig, hookimpl

from .base import PeftMethod, Targets, sorted_targets, targets_field

if TYPE_CHECKING:
    from fedllm.context import RunContext


# --------------------------------------------------------------------------- IA3


class IA3Config(PluginConfig):
    target_modules: Targets = targets_field(None, "rescale")
    feedforward_modules: Targets = Field(
        None, description="Which of target_modules are feed-forward layers (their input is "
        "rescaled, not their output); None: peft's default for the architecture.")


class IA3(PeftMethod):
    peft_types = ("IA3",)

    def build(self, ctx: RunContext, model: Any) -> Any:
        import peft

        c = self.config
        return peft.IA3Config(target_modules=c.target_modules,
                              feedforward_modules=c.feedforward_modules, task_type="CAUSAL_LM")

    @hookimpl
    def fedllm_config_from_adapter(self, adapter_config: dict[str, Any]) -> dict[str, Any] | None:
        return {"name": "ia3",
                "target_modules": sorted_targets(adapter_config.get("target_modules")),
                "feedforward_modules": sorted_targets(adapter_config.get("feedforward_modules"))}


# --------------------------------------------------------------------------- LoHa / LoKr


class LycorisConfig(PluginConfig):
    r: int = Field(8, ge=1, description="Rank of the factors.")
    alpha: int = Field(8, ge=1, description="Scaling numerator.")
    rank_dropout: float = Field(0.0, ge=0, lt=1, description="Dropout on the rank dimension.")
    module_dropout: float = Field(0.0, ge=0, lt=1, description="Probability of skipping the "
                                  "adapter of a module in a training step.")
    target_modules: Targets = targets_field(["q_proj", "v_proj"])


class LoHa(PeftMethod):
    peft_types = ("LOHA",)

    def build(self, ctx: RunContext, model: Any) -> Any:
        import peft

        c = self.config
        return peft.LoHaConfig(r=c.r, alpha=c.alpha, rank_dropout=c.rank_dropout,
                               module_dropout=c.module_dropout, target_modules=c.target_modules,
                               task_type="CAUSAL_LM")

    @hookimpl
    def fedllm_config_from_adapter(self, adapter_config: dict[str, Any]) -> dict[str, Any] | None:
        return {"name": "loha", "r": adapter_config["r"], "alpha": adapter_config["alpha"],
                "target_modules": sorted_targets(adapter_config.get("target_modules"))}


class LoKr(PeftMethod):
    peft_types = ("LOKR",)

    def build(self, ctx: RunContext, model: Any) -> Any:
        import peft

        c = self.config
        return peft.LoKrConfig(r=c.r, alpha=c.alpha, rank_dropout=c.rank_dropout,
                               module_dropout=c.module_dropout, target_modules=c.target_modules,
                               task_type="CAUSAL_LM")

    @hookimpl
    def fedllm_config_from_adapter(self, adapter_config: dict[str, Any]) -> dict[str, Any] | None:
        return {"name": "lokr", "r": adapter_config["r"], "alpha": adapter_config["alpha"],
                "target_modules": sorted_targets(adapter_config.get("target_modules"))}


# --------------------------------------------------------------------------- VeRA


class VeraConfig(PluginConfig):
    r: int = Field(256, ge=1, description="Rank of the shared frozen random projections.")
    target_modules: Targets = targets_field(["q_proj", "v_proj"])
    projection_prng_key: int = Field(0, ge=0, description="Seed of the frozen random "
                                     "projections (the same on every client).")
    d_initial: float = Field(0.1, gt=0, description="Initial value of the d scaling vector.")
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout on the VeRA input.")


class Vera(PeftMethod):
    peft_types = ("VERA",)

    def build(self, ctx: RunContext, model: Any) -> Any:
        import peft

        c = self.config
        return peft.VeraConfig(r=c.r, target_modules=c.target_modules,
                               projection_prng_key=c.projection_prng_key,
                               d_initial=c.d_initial, vera_dropout=c.dropout,
                               save_projection=True, task_type="CAUSAL_LM")

    @hookimpl
    def fedllm_config_from_adapter(self, adapter_config: dict[str, Any]) -> dict[str, Any] | None:
        return {"name": "vera", "r": adapter_config["r"],
                "target_modules": sorted_targets(adapter_config.get("target_modules")),
                "projection_prng_key": adapter_config.get("projection_prng_key", 0),
                "d_initial": adapter_config.get("d_initial", 0.1)}


# --------------------------------------------------------------------------- LN tuning


class LNTuningConfig(PluginConfig):
    target_modules: Targets = targets_field(None, "train (trained copies of)")


class LNTuning(PeftMethod):
    peft_types = ("LN_TUNING",)

    def build(self, ctx: RunContext, model: Any) -> Any:
        import peft

        return peft.LNTuningConfig(target_modules=self.config.target_modules,
                                   task_type="CAUSAL_LM")

    @hookimpl
    def fedllm_config_from_adapter(self, adapter_config: dict[str, Any]) -> dict[str, Any] | None:
        return {"name": "ln-tuning",
                "target_modules": sorted_targets(adapter_config.get("target_modules"))}


# --------------------------------------------------------------------------- FourierFT


class FourierFTConfig(PluginConfig):
    n_frequency: int = Field(1000, ge=1, description="Trained spectral coefficients per "
                             "adapted module (at most in × out features).")
    scaling: float = Field(150.0, gt=0, description="Scale of the spectral update.")
    random_loc_seed: int = Field(777, ge=0, description="Seed of the frequencies trained (the "
                                 "same on every client).")
    target_modules: Targets = targets_field(["q_proj", "v_proj"])


class FourierFT(PeftMethod):
    peft_types = ("FOURIERFT",)

    def build(self, ctx: RunContext, model: Any) -> Any:
        import peft

        c = self.config
        return peft.FourierFTConfig(n_frequency=c.n_frequency, scaling=c.scaling,
                                    random_loc_seed=c.random_loc_seed,
                                    target_modules=c.target_modules, task_type="CAUSAL_LM")

    @hookimpl
    def fedllm_config_from_adapter(self, adapter_config: dict[str, Any]) -> dict[str, Any] | None:
        return {"name": "fourierft", "n_frequency": adapter_config["n_frequency"],
                "scaling": adapter_config["scaling"],
                "random_loc_seed": adapter_config.get("random_loc_seed", 777),
                "target_modules": sorted_targets(adapter_config.get("target_modules"))}


# --------------------------------------------------------------------------- OFT


class OFTConfig(PluginConfig):
    block_size: int = Field(32, ge=1, description="Size of the orthogonal blocks (must divide "
                            "each adapted module's input features).")
    module_dropout: float = Field(0.0, ge=0, lt=1, description="Probability of skipping a "
                                  "block in a training step (multiplicative dropout).")
    target_modules: Targets = targets_field(["q_proj", "v_proj"])


class OFT(PeftMethod):
    peft_types = ("OFT",)

    def build(self, ctx: RunContext, model: Any) -> Any:
        import peft

        c = self.config
        return peft.OFTConfig(r=0, oft_block_size=c.block_size, module_dropout=c.module_dropout,
                              target_modules=c.target_modules, task_type="CAUSAL_LM")

    @hookimpl
    def fedllm_config_from_adapter(self, adapter_config: dict[str, Any]) -> dict[str, Any] | None:
        return {"name": "oft", "block_size": adapter_config["oft_block_size"],
                "target_modules": sorted_targets(adapter_config.get("target_modules"))}


_ALL = "all algorithms"
ia3 = Plugin(kind="peft", name="ia3", factory=IA3, Config=IA3Config,
             description=f"IA3 (peft): learned rescaling of keys, values and FFN inputs; {_ALL}.")
loha = Plugin(kind="peft", name="loha", factory=LoHa, Config=LycorisConfig,
              description=f"LoHa (peft): low-rank Hadamard-product updates; {_ALL}.")
lokr = Plugin(kind="peft", name="lokr", factory=LoKr, Config=LycorisConfig,
              description=f"LoKr (peft): low-rank Kronecker-product updates; {_ALL}.")
vera = Plugin(kind="peft", name="vera", factory=Vera, Config=VeraConfig,
              description=f"VeRA (peft): scaling vectors over shared frozen random "
              f"projections; {_ALL}.")
ln_tuning = Plugin(kind="peft", name="ln-tuning", factory=LNTuning, Config=LNTuningConfig,
                   description=f"LayerNorm tuning (peft): trained copies of the norm layers; "
                   f"{_ALL}.")
fourierft = Plugin(kind="peft", name="fourierft", factory=FourierFT, Config=FourierFTConfig,
                   description=f"FourierFT (peft): trained spectral coefficients of the weight "
                   f"update; {_ALL}.")
oft = Plugin(kind="peft", name="oft", factory=OFT, Config=OFTConfig,
             description=f"OFT (peft): block-diagonal orthogonal rotations of the weights; "
             f"{_ALL}.")
