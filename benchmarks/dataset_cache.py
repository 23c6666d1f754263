"""Build time of a paper-scale natural-id dataset, cold vs. from the on-disk cache.

Writes a synthetic file in lmsys/chatbot_arena_conversations' layout (33,000 conversations,
judges with a long-tailed number of votes, ~30% ties), then builds Fed-ChatbotPA from it twice
with the same config: the first build filters and splits, the second memory-maps the cache.

    HF_DATASETS_OFFLINE=1 HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/dataset_cache.py
"""

from __future__ import annotations

import json
import os
import random
import tempfile
import time
from pathlib import Path


def write_arena(path: Path, n: int = 33_000, seed: int = 0) -> None:
    rng = random.Random(seed)
    weights = [1 / (k + 1) ** 0.9 for k in range(12_000)]
    judges = rng.choices(range(12_000), weights=weights, k=n)
    with open(path, "w", encoding="utf-8") as f:
        for q, j in enumerate(judges):
            winner = rng.choice(["model_a", "model_b", "model_a", "model_b", "tie",
                                 "tie (bothbad)"])
            prompt = f"question {q}: " + " ".join(rng.choice("abcdefgh") * 3 for _ in range(30))
            def conv(side, prompt=prompt, q=q):
                return [{"content": prompt, "role": "user"},
                        {"content": f"{side} answer {q} " * 20, "role": "assistant"}]
            f.write(json.dumps({
                "question_id": f"{q:032x}", "model_a": "vicuna-13b", "model_b": "koala-13b",
                "winner": winner, "judge": f"arena_user_{j}", "conversation_a": conv("a"),
                "conversation_b": conv("b"), "turn": 1, "anony": True, "language": "English",
                "tstamp": 1.68e9 + q}) + "\n")


def main() -> None:
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["FEDLLM_HOME"] = tmp
        from fedllm.config import resolve

        src = Path(tmp) / "arena.jsonl"
        write_arena(src)
        resolved = resolve({"dataset": {"name": "fed-chatbotpa", "source": str(src)}})
        info, cfg = resolved.one("dataset")
        times = []
        for _ in range(2):
            t = time.perf_counter()
            ds = info.plugin.build(cfg).fedllm_load_dataset(ctx=None)
            times.append(time.perf_counter() - t)
            print(f"cached={ds.info['cached']}: {len(ds.clients)} clients, "
                  f"{len(ds.train)} train + {len(ds.heldout)} held-out pairs, "
                  f"{times[-1]:.2f} s")
        print(f"source {src.stat().st_size / 1e6:.1f} MB; cache speed-up "
              f"{times[0] / times[1]:.1f}x")


if __name__ == "__main__":
    main()
