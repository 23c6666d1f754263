"""`fedllm report`: per-round PNGs and one self-contained HTML page; several runs overlay."""

from __future__ import annotations

from click.testing import CliRunner

from fedllm.cli.main import main
from fedllm.testing import run_quick


def test_report_of_one_run_and_an_overlay_of_two(fedllm_home, tmp_path):
    a = run_quick(tmp_path, "rounds=3", "eval_every=1", name="fedavg").run_dir.path
    b = run_quick(tmp_path, "rounds=3", "eval_every=1", "algorithm.name=fedprox",
                  "privacy=[{name: user-dp, sigma: 0.001}]", name="fedprox-dp").run_dir.path
    res = CliRunner().invoke(main, ["report", str(a)])
    assert res.exit_code == 0, res.output
    one = {p.name for p in (a / "report").glob("*.png")}
    assert {"train-loss.png", "eval-heldout-loss-loss.png", "bytes.png", "memory.png",
            "round-time.png"} <= one, one
    out = tmp_path / "cmp"
    res = CliRunner().invoke(main, ["report", str(a), str(b), "--out", str(out)])
    assert res.exit_code == 0, res.output
    both = {p.name for p in out.glob("*.png")}
    assert "privacy-user-dp.png" in both  # ε spent, from the DP run
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") == len(both)
    assert "fedavg" in page and "fedprox-dp" in page
