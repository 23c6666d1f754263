"""The GPU benchmark must run when a GPU session picks it up: its CPU smoke mode runs here."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_benchmark_smoke_runs_every_case(tmp_path):
    out = tmp_path / "gpu.json"
    res = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu.py"), "--smoke",
                          "--steps", "1", "--json", str(out)], capture_output=True, text=True,
                         timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    rows = json.loads(out.read_text())
    assert [r["case"] for r in rows] == ["sft batch 4", "sft batch 4 ckpt", "dpo batch 2"]
    assert all(r["tokens_per_s"] > 0 and r["loss"] == r["loss"] for r in rows)
