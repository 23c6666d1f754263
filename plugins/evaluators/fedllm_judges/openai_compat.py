"""A judge behind any OpenAI chat-completions endpoint (OpenAI, vLLM, Ollama, TGI ...).

Plain ``urllib`` (stdlib), a thread pool for concurrency, exponential backoff on 429/5xx
(honouring ``Retry-After``) and a preflight request so that a bad key or an unreachable endpoint
stops the evaluation before any generation work is spent.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from pydantic import Field

from fedllm import Plugin, PluginConfig, hookimpl
from fedllm.errors import FedLLMError

from .base import JudgeBase

if TYPE_CHECKING:
    from fedllm.context import RunContext

RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}


class OpenAICompatibleConfig(PluginConfig):
    base_url: str = Field("https://api.openai.com/v1",
                          description="API root; '/chat/completions' is appended.")
    model: str = Field("gpt-4", description="Judge model name as the endpoint knows it "
                       "(FedLLM-Bench used GPT-4).")
    api_key_env: str | None = Field(
        "OPENAI_API_KEY", description="Environment variable holding the API key; null for "
        "endpoints without authentication (local vLLM/Ollama).")
    temperature: float = Field(0.0, ge=0, le=2, description="Sampling temperature (MT-Bench: 0).")
    max_tokens: int = Field(2048, ge=1, description="Max tokens of one judgment.")
    concurrency: int = Field(8, ge=1, description="Requests in flight at once.")
    retries: int = Field(5, ge=0, description="Retries of a request on 429/5xx/timeouts.")
    backoff: float = Field(1.0, ge=0, description="First retry delay in seconds (doubles).")
    timeout: float = Field(120.0, gt=0, description="Seconds to wait for one response.")
    preflight: bool = Field(True, description="Send one tiny request before any generation.")
    cache_dir: str | None = Field(None, description="Judgment cache (default "
                                  "$FEDLLM_HOME/judge-cache).")


class OpenAICompatibleJudge(JudgeBase):
    def __init__(self, config: OpenAICompatibleConfig):
        super().__init__(config)
        self.concurrency = config.concurrency
        self.url = config.base_url.rstrip("/") + "/chat/completions"

    @hookimpl
    def fedllm_judge_identity(self) -> dict[str, Any]:
        c = self.config
        return {"judge": "openai-compatible", "base_url": c.base_url, "model": c.model,
                "temperature": c.temperature, "max_tokens": c.max_tokens}

    def _key(self) -> str | None:
        env = self.config.api_key_env
        if env is None:
            return None
        key = os.environ.get(env)
        if not key:
            raise FedLLMError(f"judge openai-compatible: the API key variable ${env} is not set "
                              f"(judge.api_key_env={env!r}); export it, or set "
                              "judge.api_key_env: null for an endpoint without keys")
        return key

    def _post(self, payload: dict[str, Any]) -> dict[str, Any]:
        """POST with retries; returns the parsed response or raises FedLLMError."""
        headers = {"Content-Type": "application/json"}
        key = self._key()
        if key:
            headers["Authorization"] = f"Bearer {key}"
        body = json.dumps(payload).encode()
        delay = self.config.backoff
        last = ""
        for attempt in range(self.config.retries + 1):
            req = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(req, timeout=self.config.timeout) as resp:
                    return json.loads(resp.read().decode("utf-8"))
            except urllib.error.HTTPError as exc:
                detail = exc.read().decode("utf-8", "replace")[:300]
                if exc.code in (401, 403):
                    raise FedLLMError(
                        f"judge openai-compatible: {self.url} rejected the API key from "
                        f"${self.config.api_key_env} (HTTP {exc.code}: {detail})") from None
                if exc.code not in RETRY_STATUS:
                    raise FedLLMError(f"judge openai-compatible: {self.url} answered HTTP "
                                      f"{exc.code} for model {self.config.model!r}: "
                                      f"{detail}") from None
                last = f"HTTP {exc.code}: {detail}"
                retry_after = exc.headers.get("Retry-After") if exc.headers else None
                wait = float(retry_after) if retry_after and retry_after.isdigit() else delay
            except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
                reason = getattr(exc, "reason", exc)
                last = f"{type(exc).__name__}: {reason}"
                wait = delay
            except json.JSONDecodeError as exc:
                raise FedLLMError(f"judge openai-compatible: {self.url} did not answer JSON "
                                  f"({exc})") from None
            if attempt < self.config.retries:
                time.sleep(wait)
                delay *= 2
        raise FedLLMError(f"judge openai-compatible: {self.url} failed after "
                          f"{self.config.retries + 1} attempts (last: {last})")

    @hookimpl
    def fedllm_check(self, ctx: RunContext) -> list[str] | None:
        """The preflight: one tiny request, so a bad key or an unreachable endpoint stops the
        evaluation before any generation work is spent."""
        if not self.config.preflight:
            return None
        try:
            self._key()
            self._post({"model": self.config.model, "max_tokens": 1,
                        "messages": [{"role": "user", "content": "Reply with OK."}]})
        except FedLLMError as exc:
            return [f"{exc} (judge preflight; no generation was started)"]
        return None

    @hookimpl
    def fedllm_judge(self, prompts: list[tuple[str, str, int]]) -> list[str]:
        if self.concurrency <= 1 or len(prompts) <= 1:
            return [self.complete(*p) for p in prompts]
        with ThreadPoolExecutor(self.concurrency) as pool:
            return list(pool.map(lambda p: self.complete(*p), prompts))

    def complete(self, system: str, user: str, repeat: int) -> str:
        messages = ([{"role": "system", "content": system}] if system else []) + \
            [{"role": "user", "content": user}]
        data = self._post({"model": self.config.model, "messages": messages,
                           "temperature": self.config.temperature,
                           "max_tokens": self.config.max_tokens})
        try:
            return data["choices"][0]["message"]["content"] or ""
        except (KeyError, IndexError, TypeError):
            raise FedLLMError(f"judge openai-compatible: {self.url} answered without "
                              f"choices[0].message.content: {str(data)[:200]}") from None


plugin = Plugin(kind="judge", name="openai-compatible", factory=OpenAICompatibleJudge,
                Config=OpenAICompatibleConfig,
                description="A judge behind any OpenAI chat-completions endpoint.")
