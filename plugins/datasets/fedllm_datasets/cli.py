"""``fedllm data stats|show``: FedLLM-Bench's Table 1 for any dataset plugin, and a peek at a
client's samples. The dataset is built exactly as a run builds it (same config, same cache).

Contributed to the ``fedllm`` CLI by this distribution's ``fedllm.commands`` entry point; the
module imports only click, so ``fedllm --help`` stays instant."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from fedllm import Command, Plugin, hookimpl
from fedllm.errors import ConfigError, FedLLMError

_CONFIG = click.option("--config", "config", type=click.Path(dir_okay=False, exists=True),
                       help="A run config YAML to take the dataset (and model) sections from.")
_SET = click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                    help="Override a config key, e.g. --set dataset.min_samples=50.")


def load_dataset(name: str, config: str | None, overrides: list[str]):
    """Resolve a run config with ``dataset.name=name`` and call the dataset hook."""
    from fedllm.config import build_config, resolve
    from fedllm.context import build_context
    from fedllm.context import load_dataset as load

    data = build_config(config, list(overrides))
    section = data.get("dataset")
    if not isinstance(section, dict):
        section = {}
    data["dataset"] = {**section, "name": name}
    resolved = resolve(data)
    return resolved, load(build_context(resolved))


def _texts(batch: dict[str, list], n: int) -> tuple[list[str], list[str]]:
    """(instruction side, response side) texts of a batch in any of the sample formats."""
    if "messages" in batch:
        ins = ["\n".join(m["content"] or "" for m in conv if m["role"] == "user")
               for conv in batch["messages"]]
        res = ["\n".join(m["content"] or "" for m in conv if m["role"] == "assistant")
               for conv in batch["messages"]]
        return ins, res
    if "prompt" in batch:
        return [p or "" for p in batch["prompt"]], [c or "" for c in batch["chosen"]]
    if "instruction" in batch:
        inputs = batch.get("input") or [None] * n
        ins = [f"{i or ''}\n{x}" if x else (i or "") for i, x in zip(batch["instruction"], inputs)]
        return ins, [r or "" for r in batch.get("response") or [""] * n]
    raise FedLLMError(f"cannot tell the sample format from columns {sorted(batch)}: expected "
                      "instruction/response, prompt/chosen/rejected or messages")


def _ms(values) -> dict[str, float]:
    import numpy as np

    a = np.asarray(values, dtype=float)
    return {"mean": float(a.mean()) if a.size else 0.0, "std": float(a.std()) if a.size else 0.0}


def compute_stats(ds, tokenizer, batch_size: int = 1000) -> dict[str, Any]:
    """Table 1: clients, samples, per-client samples and token lengths (mean ± std)."""
    import numpy as np

    from fedllm.data import CLIENT

    tables = [t for t in (ds.train, ds.heldout) if t is not None]
    counts: dict[str, int] = {cid: 0 for cid in ds.clients}
    ins_len: list[int] = []
    res_len: list[int] = []
    for t in tables:
        for start in range(0, len(t), batch_size):
            batch = t[start:start + batch_size]
            n = len(batch[CLIENT])
            for cid in batch[CLIENT]:
                counts[cid] = counts.get(cid, 0) + 1
            ins, res = _texts(batch, n)
            enc = tokenizer(ins + res, add_special_tokens=False)["input_ids"]
            ins_len += [len(x) for x in enc[:n]]
            res_len += [len(x) for x in enc[n:]]
    per_client = np.array(list(counts.values()))
    return {"clients": len(counts), "samples": int(per_client.sum()),
            "train_samples": len(ds.train),
            "heldout_samples": len(ds.heldout) if ds.heldout is not None else 0,
            "samples_per_client": _ms(per_client), "instruction_tokens": _ms(ins_len),
            "response_tokens": _ms(res_len), "per_client": counts,
            "_lengths": (ins_len, res_len)}


def write_plots(stats: dict[str, Any], name: str, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    counts = sorted(stats["per_client"].values(), reverse=True)
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.bar(range(len(counts)), counts, width=1.0, color="#4c72b0")
    ax.set(xlabel="client (sorted by size)", ylabel="samples",
           title=f"{name}: samples per client ({len(counts)} clients)")
    fig.tight_layout()
    q = out / f"{name}-quantity.png"
    fig.savefig(q, dpi=120)
    plt.close(fig)
    ins, res = stats["_lengths"]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for ax, vals, label in ((axes[0], ins, "instruction"), (axes[1], res, "response")):
        ax.hist(vals, bins=40, color="#55a868")
        ax.set(xlabel=f"{label} tokens", ylabel="samples", title=f"{name}: {label} length")
    fig.tight_layout()
    ln = out / f"{name}-length.png"
    fig.savefig(ln, dpi=120)
    plt.close(fig)
    return [q, ln]


class DataCommands(Command):
    def __init__(self, config):
        self.config = config

    @hookimpl
    def fedllm_register_commands(self, cli: click.Group) -> None:
        cli.add_command(data)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def data() -> None:
    """Inspect federated datasets: FedLLM-Bench Table 1 statistics, client samples."""


def _out():
    from rich.console import Console

    return Console()


@data.command()
@click.argument("dataset")
@_CONFIG
@_SET
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=".",
              show_default=True, help="Directory for the PNG plots and stats JSON.")
def stats(dataset, config, overrides, out_dir) -> None:
    """Print Table 1 (clients, samples, lengths) of DATASET and plot its distributions."""
    from rich.table import Table

    from fedllm.model import load_tokenizer

    resolved, ds = load_dataset(dataset, config, list(overrides))
    tok = load_tokenizer(resolved.run.model)
    st = compute_stats(ds, tok)
    t = Table(title=f"{dataset} (tokenizer: {resolved.run.model.name_or_path})")
    for col in ("clients", "samples", "samples / client", "instruction tokens",
                "response tokens"):
        t.add_column(col, justify="right")
    f = lambda d: f"{d['mean']:.1f} ± {d['std']:.1f}"  # noqa: E731
    t.add_row(str(st["clients"]), str(st["samples"]), f(st["samples_per_client"]),
              f(st["instruction_tokens"]), f(st["response_tokens"]))
    _out().print(t)
    safe = dataset.replace("/", "_")
    paths = write_plots(st, safe, Path(out_dir))
    blob = {k: v for k, v in st.items() if not k.startswith("_")}
    blob["dataset"] = dataset
    (Path(out_dir) / f"{safe}-stats.json").write_text(json.dumps(blob, indent=2) + "\n")
    _out().print(f"plots: {', '.join(map(str, paths))}", highlight=False)


@data.command()
@click.argument("dataset")
@click.option("--client", "client", required=True, help="The client id to show.")
@click.option("-n", "count", type=click.IntRange(min=1), default=3, show_default=True,
              help="How many samples.")
@click.option("--split", type=click.Choice(["train", "heldout"]), default="train",
              show_default=True)
@_CONFIG
@_SET
def show(dataset, client, count, split, config, overrides) -> None:
    """Print a few samples of one client of DATASET (and its metadata)."""
    from fedllm.data import CLIENT

    _, ds = load_dataset(dataset, config, list(overrides))
    if client not in ds.clients:
        ids = list(ds.clients)
        raise ConfigError(f"--client: {client!r} is not a client of {dataset}; it has "
                          f"{len(ids)} clients, e.g. {', '.join(ids[:10])}")
    table = ds.train if split == "train" else ds.heldout
    if table is None:
        raise FedLLMError(f"{dataset} has no held-out split (set dataset.heldout > 0)")
    rows = table.filter(lambda c: c == client, input_columns=CLIENT)
    _out().print(f"client {client}: {json.dumps(ds.clients[client], ensure_ascii=False)}",
              highlight=False)
    for i in range(min(count, len(rows))):
        _out().print(json.dumps(rows[i], ensure_ascii=False, indent=2), highlight=False)


plugin = Plugin(kind="command", name="data", factory=DataCommands,
                description="`fedllm data stats|show`: dataset statistics (FedLLM-Bench Table 1) "
                "and client samples.")
