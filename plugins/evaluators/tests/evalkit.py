"""Helpers of the evaluator tests: the shared evaluation files, a fake OpenAI-compatible
judge server on 127.0.0.1, and building/running one component."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

EVAL = Path(__file__).resolve().parents[4] / "shared" / "data" / "eval"
if not EVAL.is_dir():  # the checkout may live elsewhere; the shared files do not move
    EVAL = Path("/work/shared/data/eval")


class FakeJudge:
    """A chat-completions server: replies come from ``script`` (status, content) first, then
    ``default``; every request body is kept in ``requests``."""

    def __init__(self):
        self.script: list[tuple[int, str]] = []
        self.default: tuple[int, str] = (200, "Good answer. Rating: [[7]]")
        self.requests: list[dict] = []
        self.headers: list[dict] = []
        self.key = "sk-test"
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with fake.lock:
                    fake.requests.append(body)
                    fake.headers.append(dict(self.headers))
                    status, content = fake.script.pop(0) if fake.script else fake.default
                if self.headers.get("Authorization") != f"Bearer {fake.key}":
                    status, content = 401, "invalid api key"
                if status != 200:
                    self.send_response(status)
                    self.end_headers()
                    self.wfile.write(json.dumps({"error": {"message": content}}).encode())
                    return
                payload = {"id": "x", "object": "chat.completion", "model": body["model"],
                           "choices": [{"index": 0, "finish_reason": "stop",
                                        "message": {"role": "assistant", "content": content}}]}
                data = json.dumps(payload).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def judge_spec(self, cache_dir, **kw) -> dict:
        return {"name": "openai-compatible", "base_url": self.url, "model": "judge-model",
                "api_key_env": "FAKE_JUDGE_KEY", "backoff": 0.01, "retries": 2,
                "timeout": 10, "concurrency": 2, "cache_dir": str(cache_dir), **kw}

    def user_prompts(self) -> list[str]:
        return [r["messages"][-1]["content"] for r in self.requests]



def build(kind: str, component: str, **cfg):
    """A component built from ``cfg``; a judge comes wrapped in the evaluators' Grader."""
    from fedllm.testing import component as make
    from fedllm_judges.base import Grader

    cfg.pop("name", None)
    built = make(kind, component, **cfg)
    return Grader(built) if kind == "judge" else built


def evaluate(ctx, name: str, /, **cfg) -> tuple[dict, dict]:
    """Run one evaluator on the tiny model; return (summary, eval/<name>/round-1.json)."""
    from fedllm.testing import call

    out = call(build("evaluator", name, **cfg), "fedllm_evaluate", ctx=ctx, model=ctx.model,
               cohort="global", round=0)
    report = json.loads((ctx.run_dir / "eval" / name / "round-1.json").read_text())
    return out, report


def report_file(run_dir, name: str) -> Path:
    """The newest ``eval/<name>/round-N.json`` (or ``final.json``) under ``run_dir``."""
    folder = Path(run_dir) / "eval" / name
    found = sorted(folder.glob("*.json"), key=lambda p: p.stat().st_mtime_ns)
    return found[-1] if found else folder / "round-1.json"
