"""Message codecs on the default run: bytes on the wire against the final held-out loss.

Each case is the default ``fedllm run`` (the embedded tiny model and dataset, 10 rounds of 3
clients x 10 local steps, FedAvg, LoRA r=16; one torch thread) with ``codecs`` set; the
baseline has none. Reported per case: the encoded bytes of all rounds per direction as a
share of the float32 bytes (the ``codec`` record of ``metrics.jsonl``), the mean
reconstruction error of the messages (relative to the client's change for uploads), the
final held-out loss and its relative regression against the baseline. Targets (the issue):
int8 <= 0.27x the float32 bytes with <= 1% regression; top-k 10% with error feedback <= 0.12x
(of the uploads it encodes) with <= 2% regression.

    python benchmarks/codecs.py                  # every case
    python benchmarks/codecs.py --only int8 topk --rounds 10
    python benchmarks/codecs.py --only topk --set sampler.name=all   # full participation
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

CASES: dict[str, list[dict[str, Any]]] = {
    "none": [],
    "fp16": [{"name": "fp16"}],
    "bf16": [{"name": "bf16"}],
    "int8": [{"name": "int8"}],
    "int8+deflate": [{"name": "int8"}, {"name": "deflate"}],
    "int8+zstd": [{"name": "int8"}, {"name": "zstd"}],
    "topk": [{"name": "topk", "fraction": 0.1}],
    "topk-no-ef": [{"name": "topk", "fraction": 0.1, "error_feedback": False}],
    "topk-25%": [{"name": "topk", "fraction": 0.25}],
    "topk+int8-down+zstd": [{"name": "topk", "fraction": 0.1},
                            {"name": "int8", "direction": "down"}, {"name": "zstd"}],
    "deflate": [{"name": "deflate"}],
}
TARGETS = {"int8": (0.27, 0.01), "topk": (0.12, 0.02)}


def run(case: str, codecs: list, args, work: Path) -> dict:
    from rich.console import Console

    from fedllm.config import apply_override, resolve
    from fedllm.engine import Engine

    cfg: dict[str, Any] = {"output_dir": str(work), "name": case, "codecs": codecs,
                           "runtime": {"threads": 1}}
    if args.rounds:
        cfg["rounds"] = args.rounds
    for override in args.overrides:  # e.g. sampler.name=all: every client in every round
        apply_override(cfg, override)
    t0 = time.perf_counter()
    eng = Engine.new(resolve(cfg), console=Console(stderr=True, quiet=True), progress=False)
    eng.run()
    hist = eng.history
    out = {"loss": hist[-1]["eval"]["global"]["heldout-loss"]["loss"],
           "wall_s": time.perf_counter() - t0}
    for d in ("down", "up"):
        sent = sum(r[f"bytes_{d}"] for r in hist)
        raw = sum(r["codec"][d]["raw_bytes"] for r in hist) if codecs else sent
        errs = [r["codec"][d]["rel_error"] for r in hist] if codecs else [0.0]
        out[d] = {"ratio": sent / raw, "bytes": sent, "rel_error": sum(errs) / len(errs)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", nargs="*", help=f"cases to run (of {', '.join(CASES)})")
    ap.add_argument("--rounds", type=int, default=None, help="rounds (default: the run's 10)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="a config override for every case, as for `fedllm run`")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("FEDLLM_HOME", tempfile.mkdtemp(prefix="fedllm-bench-"))
    sys.path.insert(0, str(ROOT))
    names = ["none", *[c for c in (args.only or CASES) if c != "none"]]
    res = {}
    with tempfile.TemporaryDirectory() as tmp:
        for case in names:
            res[case] = run(case, CASES[case], args, Path(tmp))
            print(f"  {case}: done in {res[case]['wall_s']:.0f} s", file=sys.stderr)
    base = res["none"]["loss"]
    print(f"{'codecs':<22}{'down x':>8}{'up x':>8}{'err down':>10}{'err up':>9}"
          f"{'held-out':>10}{'regr.':>8}  target")
    for case, r in res.items():
        regr = (r["loss"] - base) / base
        target = ""
        if case in TARGETS:
            most, worst = TARGETS[case]
            enc = r["up"]["ratio"] if case == "topk" else max(r["up"]["ratio"], r["down"]["ratio"])
            ok = enc <= most and regr <= worst
            target = f"<= {most}x, <= {worst:.0%}: {'met' if ok else 'MISSED'}"
        print(f"{case:<22}{r['down']['ratio']:>8.3f}{r['up']['ratio']:>8.3f}"
              f"{r['down']['rel_error']:>10.4f}{r['up']['rel_error']:>9.4f}{r['loss']:>10.4f}"
              f"{regr:>+8.2%}  {target}")
    print(json.dumps(res), file=sys.stderr)


if __name__ == "__main__":
    main()
