"""Round time of a loopback Flower deployment (`fedllm serve` + 2 x `fedllm join --insecure`)
vs the in-process simulation of the same tiny config, and bytes per round vs adapter size;
``--secagg`` adds the same deployment under SecAgg+ (`serve --secure-aggregation`).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/flower_loopback.py [--rounds 4] [--sim] \
        [--secagg] [--no-plain] [--isolation warm|subprocess] [--pull-interval S]

``round_s_median`` is the median over rounds 2+ (round 1 includes one-off start costs: the
worker's model load); ``ratio_to_in_process`` divides it by the in-process median.
``client_model_loads`` counts the contexts (model loads) the nodes built in each round.
Prints one JSON object. Every process it starts is stopped before it exits.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FEDLLM = str(Path(sys.executable).parent / "fedllm")
CLIENTS = ["arithmetic", "capitals"]


def metrics(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


def summary(recs: list[dict]) -> dict:
    later = recs[1:] or recs  # round 0 includes one-off start costs
    return {"round_s_median": statistics.median(r["wall_s"] for r in later),
            "round_s_mean": sum(r["wall_s"] for r in later) / len(later),
            "round_s": [round(r["wall_s"], 3) for r in recs],
            "client_model_loads": [r.get("client_model_loads") for r in recs],
            "tensor_bytes_down": recs[-1]["bytes_down"], "tensor_bytes_up": recs[-1]["bytes_up"],
            "wire_bytes_down": recs[-1].get("wire_bytes_down"),
            "wire_bytes_up": recs[-1].get("wire_bytes_up")}


def deployment(tmp: Path, fed: Path, sets: list[str], name: str, *serve_args: str,
               join_args: tuple[str, ...] = ()) -> dict:
    """`fedllm serve` + one `fedllm join` per client on 127.0.0.1; the run's round figures."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = []
    env = dict(os.environ)
    try:
        t = time.perf_counter()
        serve = subprocess.Popen([FEDLLM, "serve", "--insecure", "--address",
                                  f"127.0.0.1:{port}", "--num-nodes", "2", *serve_args,
                                  *[x for s_ in sets for x in ("--set", s_)], "--set",
                                  f"name={name}"], env=env, start_new_session=True,
                                 stdout=subprocess.DEVNULL, stderr=open(tmp / f"{name}.log", "w"))
        procs.append(serve)
        for c in CLIENTS:
            procs.append(subprocess.Popen(
                [FEDLLM, "join", "--insecure", "--server", f"127.0.0.1:{port}", "--data",
                 str(fed), "--client-id", c, "--threads", "1", "--state-dir",
                 str(tmp / f"state-{name}-{c}"), *join_args], env=env, start_new_session=True,
                stdout=subprocess.DEVNULL, stderr=open(tmp / f"{name}-join-{c}.log", "w")))
        rc = serve.wait(1800)
        if rc:
            raise SystemExit(f"serve failed ({rc}); see {tmp}/{name}.log")
        return {**summary(metrics(tmp / "runs" / name)), "total_s": time.perf_counter() - t}
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--sim", action="store_true", help="also time runtime.backend=flower-sim")
    ap.add_argument("--secagg", action="store_true", help="also time a SecAgg+ deployment")
    ap.add_argument("--no-plain", action="store_true", help="skip the plain deployment")
    ap.add_argument("--isolation", choices=["warm", "subprocess"], default="warm",
                    help="fedllm join --isolation")
    ap.add_argument("--pull-interval", type=float, default=None,
                    help="fedllm join --pull-interval (default: join's)")
    a = ap.parse_args()
    join_args: tuple[str, ...] = ("--isolation", a.isolation)
    if a.pull_interval is not None:
        join_args += ("--pull-interval", str(a.pull_interval))
    tmp = Path(tempfile.mkdtemp(prefix="fedllm-flower-bench-"))
    os.environ.setdefault("FEDLLM_HOME", str(tmp / "home"))
    os.environ.update(OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    sys.path.insert(0, str(ROOT))
    from fedllm_datasets.embedded import raw

    data = raw()["data"]
    fed = tmp / "fed.json"
    fed.write_text(json.dumps({c: data[c][:10] for c in CLIENTS}))
    sets = [f"rounds={a.rounds}", "clients_per_round=2", "eval_every=0", "evaluators=[]",
            "train.local_steps=2", "train.batch_size=2", "runtime.threads=1",
            "dataset.name=fedllm-bench-json", f"dataset.path={fed}", "dataset.heldout=0",
            f"output_dir={tmp}/runs"]
    out: dict = {}
    from tests.helpers import run_quick

    t = time.perf_counter()
    eng = run_quick(tmp, *sets, name="inproc")
    out["in_process"] = {**summary(eng.history), "total_s": time.perf_counter() - t}
    from fedllm.messages import nbytes

    out["adapter_bytes"] = nbytes(eng.ctx.get_params())
    if a.sim:
        t = time.perf_counter()
        eng = run_quick(tmp, *sets, "runtime.backend=flower-sim", name="sim")
        out["flower_sim"] = {**summary(eng.history), "total_s": time.perf_counter() - t}
    if not a.no_plain:
        out["loopback"] = deployment(tmp, fed, sets, "loopback", join_args=join_args)
        out["loopback"]["join_args"] = list(join_args)
        out["loopback"]["ratio_to_in_process"] = (out["loopback"]["round_s_median"]
                                                  / out["in_process"]["round_s_median"])
    if a.secagg:
        out["loopback_secagg"] = deployment(
            tmp, fed, [*sets, "runtime.backend_options.secure_aggregation.max_weight=64"],
            "loopback-secagg", "--secure-aggregation", join_args=join_args)
    out["load_avg_1m"] = os.getloadavg()[0]
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
