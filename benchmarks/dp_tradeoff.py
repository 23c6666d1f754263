"""Privacy-utility trade-off on the embedded default (FedLLM-Bench Figure 6, in miniature).

Runs FedAvg on the embedded default (tiny model) without DP and with each privacy mechanism at
ε ∈ {0.1, 1, 10}, δ = 1e-4, and plots the clients' training loss per round and the final
held-out loss. ``user-dp`` is FedLLM-Bench's mechanism (paper σ formula, clipping added);
``dp-fedavg`` is central DP-FedAvg with z calibrated by the RDP accountant.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/dp_tradeoff.py --out /tmp/dp_tradeoff

Writes ``results.json`` and ``dp_tradeoff.png`` in ``--out`` (one run directory per setting).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from rich.console import Console  # noqa: E402

from fedllm.config import apply_override, resolve  # noqa: E402
from fedllm.engine import Engine  # noqa: E402

EPSILONS = [0.1, 1.0, 10.0]
DELTA = 1e-4


def settings(mechanisms: list[str], clip: float) -> list[tuple[str, list[dict]]]:
    out: list[tuple[str, list]] = [("no DP", [])]
    for mech in mechanisms:
        for eps in EPSILONS:
            out.append((f"{mech} ε={eps:g}", [{"name": mech, "epsilon": eps, "delta": DELTA,
                                               "clip_norm": clip}]))
    return out


def run(out: Path, name: str, privacy: list[dict], overrides: list[str]) -> dict:
    data: dict = {"privacy": privacy}
    for o in [f"output_dir={out}", f"name={name}", "runtime.threads=1", "eval_every=0",
              *overrides]:
        apply_override(data, o)
    t0 = time.perf_counter()
    eng = Engine.new(resolve(data), console=Console(stderr=True, quiet=True), progress=False)
    eng.run()
    hist = eng.history
    final = hist[-1]
    ev = final["eval"]["global"]["heldout-loss"]["loss"]
    priv = {k: {kk: vv for kk, vv in v.items()
                if kk in ("epsilon", "sigma", "noise_multiplier", "clip_norm")}
            for k, v in (final.get("privacy") or {}).items()}
    return {"train_loss": [r["train_loss"] for r in hist], "heldout_loss": ev,
            "privacy": priv, "wall_s": time.perf_counter() - t0,
            "run_dir": str(eng.run_dir.path)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="/tmp/dp_tradeoff")
    ap.add_argument("--mechanisms", default="user-dp,dp-fedavg")
    ap.add_argument("--clip", type=float, default=1.0, help="clip_norm C of every mechanism")
    ap.add_argument("--set", dest="overrides", action="append", default=[],
                    help="extra config overrides, e.g. --set rounds=20")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    results = {}
    for label, privacy in settings(args.mechanisms.split(","), args.clip):
        name = f"{stamp}-" + label.replace(" ", "_").replace("ε=", "eps")
        results[label] = run(out, name, privacy, args.overrides)
        r = results[label]
        print(f"{label:22s} train loss (last round) {r['train_loss'][-1]:.4f}  held-out loss "
              f"{r['heldout_loss']:.4f}  {r['privacy']}  ({r['wall_s']:.0f} s)", flush=True)
    (out / "results.json").write_text(json.dumps(results, indent=1))

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    for label, r in results.items():
        style = "-" if label == "no DP" else ("--" if label.startswith("user-dp") else ":")
        ax1.plot(range(1, len(r["train_loss"]) + 1), r["train_loss"], style, marker=".",
                 label=label, color="black" if label == "no DP" else None)
    ax1.set(xlabel="round", ylabel="train loss (clients' mean)",
            title=f"FedAvg on the embedded default, δ=1e-4, C={args.clip:g}")
    ax1.legend(fontsize=8)
    base = results["no DP"]["heldout_loss"]
    ax2.axhline(base, color="black", label="no DP")
    for mech in args.mechanisms.split(","):
        ys = [results[f"{mech} ε={e:g}"]["heldout_loss"] for e in EPSILONS]
        ax2.plot(EPSILONS, ys, marker="o", label=mech)
    ax2.set(xscale="log", xlabel="ε", ylabel="held-out loss after the last round",
            title="privacy-utility trade-off")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "dp_tradeoff.png", dpi=120)
    print(f"wrote {out / 'dp_tradeoff.png'} and {out / 'results.json'}")


if __name__ == "__main__":
    main()
