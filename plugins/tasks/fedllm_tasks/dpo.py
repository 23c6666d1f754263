"""Preference alignment with DPO (FedLLM-Bench Fed-ChatbotPA, OpenFedLLM FedVA).

Samples are ``{prompt, chosen, rejected}``: ``prompt`` a string (one user turn) or a list of
``{role, content}`` messages ending with a user turn, rendered with the task's template;
``chosen`` / ``rejected`` strings, each followed by EOS.

The loss is trl's: batches are built by trl's ``DataCollatorForPreference`` (chosen and
rejected concatenated, so one forward scores both), log-probabilities come from trl's fused LM
head (no ``batch × seq × vocab`` logits), and the loss and reward metrics are computed by
``DPOTrainer._compute_loss`` itself. trl 1.16 has no functional DPO loss; the method reads a
handful of trainer attributes, which :class:`_TrlDPO` supplies, so no ``DPOTrainer`` (with its
per-construction ``datasets.map``, own optimizer and Accelerator) is built per client.

The reference policy is the frozen base model with the adapter switched off: trl scores it
under ``torch.no_grad()`` inside ``model.disable_adapter()`` in the same model object, so there
is never a second copy of the base model in memory, and it is the same in every round and
after ``--resume``.
"""

from __future__ import annotations

from collections import defaultdict
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from fedllm import Plugin, hookimpl
from fedllm.errors import ConfigError, DataError, FedLLMError

from .sft import check_max_length, check_messages
from .steps import DynamicSteps, StepsConfig
from .templates import encode_prompts, render

if TYPE_CHECKING:
    import torch

    from fedllm.context import RunContext


class DPOConfig(StepsConfig):
    beta: float = Field(0.1, gt=0, description="DPO β: strength of the pull towards the "
                        "reference (the base model with the adapter off).")
    loss_type: Literal["sigmoid", "hinge", "ipo", "robust"] = Field(
        "sigmoid", description="trl loss: sigmoid (the DPO paper's), hinge, ipo or robust "
        "(label-smoothed DPO).")
    label_smoothing: float = Field(0.0, ge=0, lt=0.5, description="Assumed fraction of "
                                   "flipped preference labels (loss_type robust).")
    template: Literal["alpaca", "vicuna", "chat"] = Field(
        "alpaca", description="Prompt template: alpaca, vicuna (FedLLM-Bench) or the "
        "tokenizer's chat template.")
    max_length: int = Field(256, ge=8, description="Max tokens of prompt + the longer answer.")
    overflow: Literal["truncate", "drop", "error"] = Field(
        "truncate", description="A pair longer than max_length: cut the answers' ends (the "
        "prompt is kept whole), drop it, or stop with an error.")
    disable_dropout: bool = Field(
        True, description="Turn dropout off in the model (trl's default for DPO), so policy "
        "and reference are scored alike.")


class _TrlDPO:
    """The attributes ``trl.DPOTrainer._compute_loss`` reads, set as ``DPOTrainer.__init__``
    sets them for a PEFT model with no separate reference model."""

    def __init__(self, config: DPOConfig, accelerator):
        import inspect

        import trl
        from trl.trainer.dpo_trainer import DPOTrainer

        compute = getattr(DPOTrainer, "_compute_loss", None)
        if compute is None or list(inspect.signature(compute).parameters) != [
                "self", "model", "inputs", "return_outputs"]:
            raise FedLLMError(f"task dpo uses trl's DPOTrainer._compute_loss(model, inputs, "
                              f"return_outputs) as in trl 1.16; trl {trl.__version__} has no "
                              "such method (install the version in constraints.txt)")
        self._compute = compute
        self.accelerator = accelerator
        self.args = SimpleNamespace(gradient_checkpointing_kwargs=None, discopop_tau=0.05)
        self.beta = config.beta
        self.loss_types = [config.loss_type]
        self.loss_weights = [1.0]
        self.label_smoothing = config.label_smoothing
        self.precompute_ref_logps = False
        self.ld_alpha = None
        self.f_divergence_type = "reverse_kl"
        self.f_alpha_divergence_coef = 1.0
        self.use_weighting = False
        self.aux_loss_enabled = False
        self.router_aux_loss_coef = 0.0
        self.ref_model = None  # -> the adapter-disabled policy
        self.model = None
        self._tp_size = 1
        self._total_train_tokens = 0
        self._metrics: dict[str, defaultdict[str, list]] = {"train": defaultdict(list),
                                                            "eval": defaultdict(list)}

    def __call__(self, model, batch):
        self.model = model
        loss = self._compute(self, model, batch, return_outputs=False)
        mode = "train" if model.training else "eval"
        m = self._metrics[mode]
        metrics = {
            "dpo_loss": loss.detach(),  # summed on the device by the core loop
            "reward_accuracy": m["rewards/accuracies"][-1],
            "reward_margin": m["rewards/margins"][-1],
            "reward_chosen": m["rewards/chosen"][-1],
            "reward_rejected": m["rewards/rejected"][-1],
        }
        for d in self._metrics.values():
            d.clear()
        return loss, metrics


class DPO(DynamicSteps):
    def __init__(self, config: DPOConfig):
        self.config = config
        self._loss: _TrlDPO | None = None
        self._collator: Any = None

    # -- formatting -------------------------------------------------------------------------

    def _prompt_text(self, ctx, prompt, client_id, split) -> str:
        if isinstance(prompt, str) and prompt.strip():
            messages = [{"role": "user", "content": prompt}]
        elif isinstance(prompt, list) and prompt:
            messages = check_messages(prompt, client_id, split, need_answer=False)
            if messages[-1]["role"] != "user":
                raise DataError(f"client {client_id!r}: a {split} sample's prompt "
                                "conversation must end with a user turn")
        else:
            raise DataError(f"client {client_id!r}: a {split} sample has no 'prompt' "
                            f"(got {prompt!r})")
        try:
            return render(self.config.template, messages, ctx.tokenizer)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None

    @hookimpl
    def fedllm_prompt(self, ctx: RunContext, messages: list[dict[str, str]]) -> str:
        return render(self.config.template, messages, ctx.tokenizer)

    @hookimpl
    def fedllm_encode(self, ctx: RunContext, batch: dict[str, list[Any]],
                      split: str) -> dict[str, list[Any]]:
        c = self.config
        check_max_length(ctx, c.max_length)
        for field in ("prompt", "chosen", "rejected"):
            if field not in batch:
                raise DataError(f"the dpo task needs 'prompt', 'chosen' and 'rejected' fields "
                                f"in every sample; the dataset has {sorted(batch)}")
        tok = ctx.tokenizer
        cids = batch["client_id"]
        prompts = []
        for i, cid in enumerate(cids):
            for field in ("chosen", "rejected"):
                v = batch[field][i]
                if not isinstance(v, str) or not v.strip():
                    raise DataError(f"client {cid!r}: a {split} sample has no {field!r} "
                                    f"(got {v!r})")
            prompts.append(self._prompt_text(ctx, batch["prompt"][i], cid, split))
        p_ids = encode_prompts(tok, prompts)
        eos = [tok.eos_token_id]
        c_ids = [x + eos for x in tok(batch["chosen"], add_special_tokens=False)["input_ids"]]
        r_ids = [x + eos for x in tok(batch["rejected"], add_special_tokens=False)["input_ids"]]
        out: dict[str, list] = {"prompt_ids": [], "chosen_ids": [], "rejected_ids": [],
                                "client_id": []}
        for i, cid in enumerate(cids):
            p, ch, rj = p_ids[i], c_ids[i], r_ids[i]
            longest = len(p) + max(len(ch), len(rj))
            if longest > c.max_length:
                if c.overflow == "error":
                    raise DataError(
                        f"client {cid!r}: a {split} pair has {longest} tokens (prompt + longer "
                        f"answer), more than task.max_length={c.max_length} (set task.overflow "
                        "to 'truncate' or 'drop', or raise max_length)")
                room = c.max_length - len(p)
                if c.overflow == "drop" or room < 1:
                    continue  # nothing of the answers would fit after the prompt
                ch, rj = ch[:room], rj[:room]
            out["prompt_ids"].append(p)
            out["chosen_ids"].append(ch)
            out["rejected_ids"].append(rj)
            out["client_id"].append(cid)
        return out

    # -- training ---------------------------------------------------------------------------

    @hookimpl
    def fedllm_collate(self, ctx: RunContext,
                       examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        if self._collator is None:
            from trl.trainer.dpo_trainer import DataCollatorForPreference

            self._collator = DataCollatorForPreference(pad_token_id=ctx.tokenizer.pad_token_id)
        return self._collator([{k: e[k] for k in ("prompt_ids", "chosen_ids", "rejected_ids")}
                               for e in examples])

    def _prepare(self, ctx, model) -> _TrlDPO:
        """Once per process: check the model has a switchable adapter, give its base trl's
        fused LM head (log-probs without full logits; the plain forward is unchanged)."""
        from trl.trainer.utils import add_fused_lm_head, disable_dropout_in_model

        if not (hasattr(model, "disable_adapter") and hasattr(model, "get_base_model")):
            raise ConfigError("task dpo: the reference model is the base with the adapter "
                              "disabled, so it needs a peft adapter that can be switched off "
                              f"(a peft.PeftModel); the model is a {type(model).__name__}")
        base = model.get_base_model()
        if not getattr(base, "_fedllm_fused_lm_head", False):
            add_fused_lm_head(base, outputs=("log_probs", "entropy", "mean_logits", "is_top1"))
            base._fedllm_fused_lm_head = True
        if self.config.disable_dropout:
            disable_dropout_in_model(model)
        return _TrlDPO(self.config, ctx.accelerator)

    @hookimpl
    def fedllm_loss(self, ctx: RunContext, model: Any, batch: dict[str, torch.Tensor]
                    ) -> tuple[torch.Tensor, dict[str, torch.Tensor | float]]:
        if self._loss is None:
            self._loss = self._prepare(ctx, model)
        elif not getattr(model.get_base_model(), "_fedllm_fused_lm_head", False):
            self._prepare(ctx, model)  # another model, e.g. the full one the server evaluates
        return self._loss(model, batch)


plugin = Plugin(kind="task", name="dpo", factory=DPO, Config=DPOConfig,
                description="Preference alignment with DPO (trl's loss); reference = base "
                "model with the adapter off.")
