"""Federated offsite-tuning (FedOT) on a small random Llama: client memory and held-out loss.

The server (an in-process run) builds the emulator of a random Llama larger than ``tiny`` (8
blocks by default: the first and last ``--k`` are the adapter, ``--drop`` of the middle is
dropped), clients train the adapter blocks on the emulator, and the server evaluates the
adapter plugged into the full model every round. Reported:

* **client memory**: one client's local update in a fresh process (as a Flower node runs it:
  ``client_context`` + ``run_client``), for full-model LoRA and for FedOT (the client is
  given the emulator directory, ``peft.emulator``, so it never builds or opens the full
  model). ``peak RSS`` is the process's resident memory sampled every millisecond from its
  start to the end of the update (not ``ru_maxrss``, which counts the parent's pages a forked
  child shares before ``exec``); ``+MB`` is that peak minus the RSS once torch, transformers
  and peft are imported (the model, data, gradients and optimizer state); ``model MB`` the
  bytes of the parameters the client holds; ``sent MB`` what it uploads.
* **held-out loss** (the ``heldout-loss`` evaluator, every client's held-out split) of the
  full model with the plugged-in adapter against the emulator with the same adapter, before
  and after training, next to full-model LoRA trained the same way.

    python benchmarks/fedot.py                       # hidden 512, 8 blocks, k 2, drop 0.5
    python benchmarks/fedot.py --drop 0.2 --rounds 8
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rss import Sampler, rss_mb  # benchmarks/rss.py, beside this script

ROOT = Path(__file__).resolve().parents[1]


def base_config(args, model: str, peft: dict, name: str, work: Path) -> dict:
    return {"output_dir": str(work / "runs"), "name": name, "seed": 0,
            "rounds": args.rounds, "clients_per_round": args.clients, "eval_every": 1,
            "checkpoint_every": 0, "model": {"name_or_path": model},
            "train": {"local_steps": args.steps, "batch_size": args.batch,
                      "lr": args.lr_full if peft.get("tune", "full") == "full"
                      and peft["name"] == "offsite" else args.lr},
            "runtime": {"threads": 1}, "peft": peft,
            "evaluators": [{"name": "heldout-loss"}]}


def child(args) -> dict:
    """One client's local update in this (fresh) process."""
    sampler = Sampler()
    sampler.start()
    import peft  # noqa: F401 - the import cost is the baseline, not the model's
    import torch  # noqa: F401
    import transformers  # noqa: F401

    from fedllm.backends import run_client
    from fedllm.config import resolve
    from fedllm.context import client_context
    from fedllm.messages import ClientInstruction, nbytes

    imported = rss_mb()
    cfg = json.loads(args.child)
    ctx = client_context(resolve(cfg))
    ins = ClientInstruction(cohort="global", round=0, client_id=ctx.dataset.client_ids[0],
                            params=ctx.get_params(), lr=1e-4, seed=1)
    up = run_client(ctx, ins)
    sampler.stop.set()
    sampler.join()
    held = sum(p.numel() * p.element_size() for p in ctx.model.parameters())
    return {"peak_rss_mb": sampler.peak, "added_mb": sampler.peak - imported,
            "model_mb": held / 2**20, "sent_mb": nbytes(up.params) / 2**20,
            "blocks": ctx.model.get_base_model().config.num_hidden_layers}


def emulator_loss(eng) -> float:
    """The held-out loss of the emulator holding the final global adapter."""
    ctx = eng.ctx
    ctx.set_params(eng.globals["global"])
    ctx.model.eval()
    comp = ctx.plugins.of("evaluator")[0]
    return comp.call("fedllm_evaluate", ctx=ctx, model=ctx.model, cohort="global",
                     round=None)["loss"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--k", type=int, default=2, help="adapter blocks at each end")
    ap.add_argument("--drop", type=float, default=0.5, help="share of the middle dropped")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--clients", type=int, default=2, help="clients per round")
    ap.add_argument("--steps", type=int, default=5, help="local steps")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--lr", type=float, default=5e-3, help="learning rate of LoRA")
    ap.add_argument("--lr-full", type=float, default=5e-4,
                    help="learning rate of whole adapter blocks (FedOT tune: full)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args)))
        return

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.path.insert(0, str(ROOT))
    from rich.console import Console

    from fedllm.config import resolve
    from fedllm.engine import Engine
    from fedllm.tiny import ensure_tiny

    home = Path(os.environ.setdefault("FEDLLM_HOME", tempfile.mkdtemp(prefix="fedllm-bench-")))
    shape = dict(hidden_size=args.hidden, intermediate_size=2 * args.hidden,
                 num_hidden_layers=args.layers, num_attention_heads=8, num_key_value_heads=4)
    model = str(ensure_tiny(home / "models" / f"fedot-h{args.hidden}-l{args.layers}", **shape))
    cases = {
        "full-model LoRA": {"name": "lora", "r": 16, "target_modules": ["q_proj", "v_proj"]},
        "FedOT (full blocks)": {"name": "offsite", "adapter_layers": args.k, "drop": args.drop},
        "FedOT (LoRA blocks)": {"name": "offsite", "adapter_layers": args.k, "drop": args.drop,
                                "tune": "lora", "r": 16},
    }
    quiet = Console(stderr=True, quiet=True)
    losses: dict[str, dict] = {}
    memory: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for label, peft in cases.items():  # the server side: federated runs, evaluated
            t0 = time.perf_counter()
            eng = Engine.new(resolve(base_config(args, model, peft, label.split()[0].lower()
                                                 + str(len(losses)), work)),
                             console=quiet, progress=False)
            eng.run()
            ev = [r["eval"]["global"]["heldout-loss"]["loss"] for r in eng.history]
            row = {"first": ev[0], "final": ev[-1], "wall_s": time.perf_counter() - t0}
            if peft["name"] == "offsite":
                row["emulator_final"] = emulator_loss(eng)
                peft = {**peft, "emulator": eng.ctx.call("fedllm_model_path")}
            losses[label] = row
            cfg = base_config(args, model, peft, "client", work)
            cfg["evaluators"] = []
            out = subprocess.run([sys.executable, __file__, "--child", json.dumps(cfg)],
                                 capture_output=True, text=True, cwd=ROOT)
            if out.returncode:
                sys.exit(f"the client process failed:\n{out.stderr[-3000:]}")
            memory[label] = json.loads(out.stdout.strip().splitlines()[-1])
            del eng
            gc.collect()

    from fedllm_peft.offsite import plan

    kept, adapter = plan(args.layers, args.k, args.drop)
    weights = sum(f.stat().st_size for f in Path(model).glob("*.safetensors")) / 2**20
    print(f"model: random Llama, hidden {args.hidden}, {args.layers} blocks, {weights:.1f} MB; "
          f"emulator keeps blocks {kept} (adapter {adapter}, drop {args.drop}); "
          f"{args.rounds} rounds x {args.clients} clients x {args.steps} steps, batch "
          f"{args.batch}, lr {args.lr} (LoRA) / {args.lr_full} (full blocks), 1 thread")
    print(f"\nclient memory (one local update, fresh process)\n{'case':<22}{'blocks':>7}"
          f"{'model MB':>10}{'peak RSS MB':>13}{'+MB':>8}{'sent MB':>9}")
    for label, m in memory.items():
        print(f"{label:<22}{m['blocks']:>7}{m['model_mb']:>10.1f}{m['peak_rss_mb']:>13.1f}"
              f"{m['added_mb']:>8.1f}{m['sent_mb']:>9.2f}")
    print(f"\nheld-out loss (heldout-loss evaluator)\n{'case':<22}{'round 1':>9}{'final':>9}"
          f"{'emulator final':>16}{'wall s':>8}")
    for label, r in losses.items():
        emu = f"{r['emulator_final']:.4f}" if "emulator_final" in r else "-"
        print(f"{label:<22}{r['first']:>9.4f}{r['final']:>9.4f}{emu:>16}{r['wall_s']:>8.1f}")
    print("(FedOT 'round 1' / 'final': the adapter plugged into the full model, as the server "
          "evaluates it; 'emulator final': the same adapter on the emulator)")


if __name__ == "__main__":
    main()
