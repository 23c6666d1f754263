"""``fedllm report RUN_DIR...``: per-round plots of one or more runs (overlaid to compare), as
PNG files and one self-contained HTML page (the PNGs embedded).

Figures: train loss (each client's, and the sample-weighted mean), every numeric evaluation
metric, ε spent (privacy components), bytes down/up, peak memory and round time. With several
runs, each figure overlays them (one colour per run; per-client losses only for one run).
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path
from typing import Any

from .results import read_run, round_number

#: evaluation results that are counts, not metrics (not plotted)
_COUNTS = {"samples", "n", "n_samples", "unparsed", "judgments", "timeouts", "with_reference"}


def new_figure(width: float = 7.0, height: float = 3.8):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(width, height))
    ax.grid(True, alpha=0.3)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # rounds are whole numbers
    return fig, ax


def set_title(ax, text: str) -> None:
    """A title wrapped to the axes' width, so that nothing is cut off."""
    import textwrap

    width = ax.figure.get_size_inches()[0]
    ax.set_title("\n".join(textwrap.wrap(text, width=int(width * 10.5))), fontsize=10)


def save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def embed(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _series(run: dict[str, Any], get) -> tuple[list[int], list[float]]:
    xs, ys = [], []
    for rec in run["records"]:
        v = get(rec)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            xs.append(round_number(run["records"], rec))
            ys.append(float(v))
    return xs, ys


def _eval_keys(runs: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    """(cohort, evaluator, metric) of every numeric evaluation result, in first-seen order."""
    seen: dict[tuple[str, str, str], None] = {}
    for run in runs:
        for rec in run["records"]:
            for cohort, res in (rec.get("eval") or {}).items():
                for ev, scores in (res or {}).items():
                    for k, v in (scores or {}).items():
                        if isinstance(v, (int, float)) and not isinstance(v, bool) \
                                and k not in _COUNTS:
                            seen[(cohort, ev, k)] = None
    return list(seen)


def _privacy_keys(runs: list[dict[str, Any]]) -> list[str]:
    seen: dict[str, None] = {}
    for run in runs:
        for rec in run["records"]:
            for name, v in (rec.get("privacy") or {}).items():
                if isinstance(v, dict) and isinstance(v.get("epsilon"), (int, float)):
                    seen[name] = None
    return list(seen)


def _label(run: dict[str, Any], runs: list[dict[str, Any]]) -> str:
    return run["name"] if len({r["name"] for r in runs}) == len(runs) else str(run["path"])


def _finish(fig, ax, title: str, ylabel: str, path: Path, legend: bool = True) -> Path:
    set_title(ax, title)
    ax.set_xlabel("round")
    ax.set_ylabel(ylabel)
    if legend and ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="best")
    return save(fig, path)


def run_figures(runs: list[dict[str, Any]], out: Path) -> list[Path]:
    """Every per-round figure of ``runs`` as PNG files under ``out``."""
    paths: list[Path] = []
    single = len(runs) == 1
    tag = runs[0]["name"] if single else f"{len(runs)} runs"

    # train loss: per client (one run) and the weighted mean
    fig, ax = new_figure(8, 4.2)
    for run in runs:
        label = _label(run, runs)
        if single:
            clients: dict[str, tuple[list[int], list[float]]] = {}
            for rec in run["records"]:
                x = round_number(run["records"], rec)
                for cohort in (rec.get("cohorts") or {}).values():
                    for cid, m in (cohort.get("clients") or {}).items():
                        if isinstance(m.get("train_loss"), (int, float)):
                            xs, ys = clients.setdefault(cid, ([], []))
                            xs.append(x)
                            ys.append(m["train_loss"])
            many = len(clients) > 12
            for cid, (xs, ys) in sorted(clients.items()):
                ax.plot(xs, ys, marker="o", markersize=4, linestyle="none", alpha=0.6,
                        label=None if many else f"client {cid}")
        xs, ys = _series(run, lambda r: r.get("train_loss"))
        ax.plot(xs, ys, color="black" if single else None, linewidth=2.2, marker="o",
                markersize=4, label="weighted mean" if single else label)
    title = f"{tag}: train loss per round"
    if single:
        title += " (dots: each sampled client; bold: sample-weighted mean)"
    paths.append(_finish(fig, ax, title, "train loss", out / "train-loss.png"))

    # evaluation metrics
    for cohort, ev, key in _eval_keys(runs):
        fig, ax = new_figure()
        for run in runs:
            xs, ys = _series(run, lambda r, c=cohort, e=ev, k=key:
                             (((r.get("eval") or {}).get(c) or {}).get(e) or {}).get(k))
            ax.plot(xs, ys, marker="o", label=_label(run, runs))
        where = "" if cohort == "global" else f" [{cohort}]"
        paths.append(_finish(fig, ax, f"{tag}: {ev} {key}{where}", f"{ev} {key}",
                             out / f"eval-{_slug(ev)}-{_slug(key)}"
                             f"{'' if cohort == 'global' else '-' + _slug(cohort)}.png"))

    # privacy spent
    for name in _privacy_keys(runs):
        fig, ax = new_figure()
        for run in runs:
            xs, ys = _series(run, lambda r, n=name: ((r.get("privacy") or {}).get(n) or {})
                             .get("epsilon"))
            ax.plot(xs, ys, marker="o", label=_label(run, runs))
        paths.append(_finish(fig, ax, f"{tag}: ε spent ({name})", "ε (cumulative)",
                             out / f"privacy-{_slug(name)}.png"))

    # bytes down / up
    fig, ax = new_figure()
    for run in runs:
        label = _label(run, runs)
        for key, style in (("bytes_down", "-"), ("bytes_up", "--")):
            xs, ys = _series(run, lambda r, k=key: r.get(k))
            ax.plot(xs, [y / 1024 for y in ys], linestyle=style, marker="o", markersize=3,
                    label=f"{key.split('_')[1]}" + ("" if single else f" — {label}"))
    paths.append(_finish(fig, ax, f"{tag}: communication per round (down: server → clients, "
                         "up: clients → server)", "KiB", out / "bytes.png"))

    # peak memory
    fig, ax = new_figure()
    for run in runs:
        label = _label(run, runs)
        for key, name in (("peak_rss_mb", "process RSS"), ("peak_gpu_mb", "GPU allocated")):
            xs, ys = _series(run, lambda r, k=key: r.get(k))
            if xs:
                ax.plot(xs, ys, marker="o", markersize=3,
                        label=name + ("" if single else f" — {label}"))
    paths.append(_finish(fig, ax, f"{tag}: peak memory", "MiB", out / "memory.png"))

    # round time
    fig, ax = new_figure()
    for run in runs:
        xs, ys = _series(run, lambda r: r.get("wall_s"))
        ax.plot(xs, ys, marker="o", label=_label(run, runs))
    paths.append(_finish(fig, ax, f"{tag}: wall time per round", "seconds",
                         out / "round-time.png", legend=not single))
    return paths


def _final_rows(runs: list[dict[str, Any]]) -> list[list[str]]:
    rows = []
    for run in runs:
        recs = run["records"]
        last = recs[-1] if recs else {}
        cfg = run["config"]
        evals = []
        for rec in reversed(recs):
            if rec.get("eval"):
                for cohort, res in rec["eval"].items():
                    for ev, scores in res.items():
                        for k, v in (scores or {}).items():
                            if isinstance(v, (int, float)) and not isinstance(v, bool):
                                pre = "" if cohort == "global" else f"{cohort}/"
                                evals.append(f"{pre}{ev} {k}={v:.4g}")
                break
        rows.append([run["name"], str(len(recs)), str(cfg.get("algorithm", {}).get("name")),
                     str(cfg.get("dataset", {}).get("name")),
                     str((cfg.get("model") or {}).get("name_or_path")),
                     f"{last.get('train_loss'):.4f}" if isinstance(last.get("train_loss"),
                                                                    float) else "–",
                     "; ".join(evals[:8]) or "–"])
    return rows


def write_run_report(paths: list[str | Path], out: Path) -> dict[str, Any]:
    """PNG figures and ``report.html`` for the run directories ``paths`` under ``out``."""
    runs = [read_run(p) for p in paths]
    out.mkdir(parents=True, exist_ok=True)
    figs = run_figures(runs, out)
    esc = html.escape
    title = f"fedllm report: {', '.join(r['name'] for r in runs)}"
    head = ["run", "rounds", "algorithm", "dataset", "model", "last train loss",
            "last evaluation"]
    page = ["<!doctype html><html><head><meta charset='utf-8'>",
            f"<title>{esc(title)}</title><style>body{{font-family:sans-serif;max-width:1100px;"
            "margin:2em auto}table{border-collapse:collapse}td,th{border:1px solid #ccc;"
            "padding:4px 8px}img{max-width:100%;display:block;margin:1em 0}</style></head>"
            f"<body><h1>{esc(title)}</h1>",
            "<table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in head) + "</tr>"]
    page += ["<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>"
             for row in _final_rows(runs)]
    page.append("</table>")
    page += [f"<h2>{esc(p.stem)}</h2><img alt='{esc(p.stem)}' src='{embed(p)}'>" for p in figs]
    page.append("</body></html>")
    (out / "report.html").write_text("\n".join(page), encoding="utf-8")
    return {"html": out / "report.html", "figures": figs}
