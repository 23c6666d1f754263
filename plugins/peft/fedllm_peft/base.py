"""What every fedllm peft method shares: build a ``peft`` config, ``get_peft_model``, report a
misfit clearly. Each method is a thin wrapper: the adapter math is peft's, never ours.

How a method's state travels: the core sends exactly the parameters that ``requires_grad``
after wrapping (``ctx.trainable``) and the algorithm averages them by name, so a method is
federated here only if averaging those tensors across clients is meaningful (they live in
one fixed parametrisation shared by every client: same shapes, same frozen random parts).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field

from fedllm import Peft, PluginConfig, hookimpl
from fedllm.errors import ConfigError

if TYPE_CHECKING:
    from fedllm.context import RunContext

#: the algorithms every method below supports: they all see the adapter only as named
#: tensors (FedAvg-style means, server optimisers, proximal terms, control variates)
ALGORITHMS = ("fedavg", "local", "fedprox", "scaffold", "fedavgm", "fedadagrad", "fedyogi",
              "fedadam")

Targets = list[str] | str | None


def targets_field(default: Targets, what: str = "adapt") -> Any:
    return Field(default, description=f"Module names to {what} (a list, a regex string, "
                 "'all-linear' where peft supports it, or None for peft's per-architecture "
                 "default).")


def sorted_targets(value: Any) -> Any:
    """A saved ``target_modules`` (peft stores a set as a list in any order) as config."""
    return sorted(value) if isinstance(value, (list, tuple, set)) else value


def wrap(model: Any, peft_config: Any, field: str = "peft.target_modules",
         value: Any = None) -> Any:
    """``peft.get_peft_model`` with a config error naming ``field`` when the config does not
    fit the model (e.g. a target module it does not have)."""
    import peft

    try:
        return peft.get_peft_model(model, peft_config)
    except (ValueError, TypeError, KeyError) as exc:
        names = sorted({n.rsplit(".", 1)[-1] for n, _ in model.named_modules() if n})
        raise ConfigError(f"{field}: {value!r} does not fit this model ({exc}); its module "
                          f"names include {', '.join(names[:24])}") from None


class PeftMethod(Peft):
    """A peft method whose trainable parameters are its adapter: ``build(ctx, model)`` returns
    the ``peft.PeftConfig``; ``fedllm_wrap_model`` wraps the frozen base with it."""

    name: str = ""

    def __init__(self, config: PluginConfig):
        self.config = config

    def build(self, ctx: RunContext, model: Any) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def targets(self) -> Any:
        return getattr(self.config, "target_modules", None)

    @hookimpl
    def fedllm_wrap_model(self, ctx: RunContext, model: Any) -> Any:
        return wrap(model, self.build(ctx, model), value=self.targets())


class PromptLearning(PeftMethod):
    """Prompt-learning methods (prompt, p- and prefix tuning): the trainable tensors live in
    ``model.prompt_encoder`` (virtual-token embeddings, and for p-tuning / projected prefixes
    the reparametrising MLP or LSTM), not in the base model's layers; they are ordinary
    ``requires_grad`` parameters of the wrapped model, so they travel like any adapter.

    peft's forward prepends the virtual tokens itself: for prompt and p-tuning it prepends
    embeddings and extends ``attention_mask`` and ``labels`` (with -100), for prefix tuning it
    passes key/value prefixes and extends ``attention_mask``; so a task's
    ``model(input_ids, attention_mask, labels).loss`` stays aligned with the real tokens, and
    outputs carry ``num_virtual_tokens`` extra leading positions (logits of the real tokens
    are the last ``seq_len``). ``disable_adapter()`` (DPO's reference) runs the base alone.

    A saved adapter holds peft's ``prompt_embeddings``: the encoder's *output* for a
    reparametrising encoder. ``PeftModel.from_pretrained`` loads it in inference mode; when
    ``fedllm eval`` loads it into a freshly wrapped model (peft's
    ``set_peft_model_state_dict``), this wrapper switches that model to use the loaded
    embeddings directly, as inference mode does, instead of re-encoding them.
    """

    #: the encoder reparametrises the embeddings (its saved adapter holds their outputs)
    reparametrised: bool = False

    @hookimpl
    def fedllm_wrap_model(self, ctx: RunContext, model: Any) -> Any:
        wrapped = wrap(model, self.build(ctx, model), field="peft",
                       value=self.config.model_dump())
        if self.reparametrised:
            _use_loaded_embeddings(wrapped)
        return wrapped


def _use_loaded_embeddings(model: Any) -> None:
    """When peft loads saved ``prompt_embeddings`` (encoder outputs) into this model's
    embedding, make ``get_prompt`` use them as they are (peft's inference mode; a projected
    prefix's outputs are wider than its input embedding, so the embedding takes their shape).
    ``ctx.set_params`` copies tensors in place and never triggers this."""
    import torch

    name = model.active_adapter
    embedding = model.prompt_encoder[name].embedding

    def loaded(module: Any, state_dict: dict[str, Any], prefix: str, *_args: Any) -> None:
        incoming = state_dict.get(prefix + "weight")
        if incoming is not None and incoming.shape != module.weight.shape:
            module.weight = torch.nn.Parameter(
                torch.empty(incoming.shape, dtype=module.weight.dtype,
                            device=module.weight.device), requires_grad=False)
        model.peft_config[name].inference_mode = True

    embedding.register_load_state_dict_pre_hook(loaded)


def common_prompt_fields(adapter_config: dict[str, Any]) -> dict[str, Any]:
    return {"num_virtual_tokens": adapter_config["num_virtual_tokens"]}
