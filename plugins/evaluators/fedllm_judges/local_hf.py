"""A Hugging Face causal LM loaded in this process as the judge (no network, no key)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field

from fedllm import Plugin, PluginConfig, hookimpl, lazy

from .base import JudgeBase

if TYPE_CHECKING:
    import torch

    from fedllm.context import RunContext
else:
    torch = lazy.module('torch')


class LocalHFConfig(PluginConfig):
    model: str = Field("tiny", description="Model id or local directory ('tiny': the "
                       "embedded offline model, for tests only).")
    dtype: str = Field("auto", pattern="^(auto|float32|bfloat16|float16)$")
    device: str = Field("auto", description="'auto', 'cpu', 'cuda', 'cuda:1' ...")
    max_new_tokens: int = Field(512, ge=1)
    temperature: float = Field(0.0, ge=0, description="0: greedy.")
    batch_size: int = Field(4, ge=1)
    cache_dir: str | None = Field(None, description="Judgment cache (default "
                                  "$FEDLLM_HOME/judge-cache).")


class LocalHFJudge(JudgeBase):
    def __init__(self, config: LocalHFConfig):
        super().__init__(config)
        self._model = None
        self._tok = None

    @hookimpl
    def fedllm_judge_identity(self) -> dict[str, Any]:
        c = self.config
        return {"judge": "local-hf", "model": c.model, "dtype": c.dtype,
                "max_new_tokens": c.max_new_tokens, "temperature": c.temperature}

    @hookimpl
    def fedllm_check(self, ctx: RunContext) -> list[str] | None:
        from fedllm.errors import FedLLMError

        try:
            self._load()
        except FedLLMError as exc:
            return [f"judge local-hf: {exc}"]
        return None

    def _load(self):
        if self._model is not None:
            return
        from fedllm.config import ModelConfig
        from fedllm.model import load_model, load_tokenizer

        mc = ModelConfig(name_or_path=self.config.model,
                         dtype="auto" if self.config.dtype == "auto" else self.config.dtype)
        dev = self.config.device
        device = torch.device("cuda" if dev == "auto" and torch.cuda.is_available()
                              else ("cpu" if dev == "auto" else dev))
        self._tok = load_tokenizer(mc)
        self._model = load_model(mc, device).eval()

    def _prompt(self, system: str, user: str) -> str:
        messages = ([{"role": "system", "content": system}] if system else []) + \
            [{"role": "user", "content": user}]
        tok: Any = self._tok
        if getattr(tok, "chat_template", None):
            return tok.apply_chat_template(messages, tokenize=False,
                                                 add_generation_prompt=True)
        return (system + "\n\n" if system else "") + user + "\n\n"

    @hookimpl
    def fedllm_judge(self, prompts: list[tuple[str, str, int]]) -> list[str]:
        from fedllm_evaluators.generation import generate_texts

        self._load()
        texts = [self._prompt(s, u) for s, u, _ in prompts]
        c = self.config
        return generate_texts(self._model, self._tok, texts, max_new_tokens=c.max_new_tokens,
                              batch_size=c.batch_size, temperature=c.temperature,
                              seed=prompts[0][2] if prompts else 0)


plugin = Plugin(kind="judge", name="local-hf", factory=LocalHFJudge, Config=LocalHFConfig,
                description="A Hugging Face causal LM loaded locally as the judge.")
