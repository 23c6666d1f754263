"""A suite's report, shaped like the paper's tables: methods × metrics (FL vs local), mean ± sd
over seeds (and replicas, e.g. the two local-training clients), as Markdown, HTML and CSV,
with bar charts and per-round curves as PNG files."""

from __future__ import annotations

import csv
import html
import statistics
from pathlib import Path
from typing import Any

from fedllm.card import final_eval

from .plots import embed, new_figure, save, set_title
from .results import mean_sd, metric_value, read_run, round_number
from .suite import Suite


def collect(suite: Suite, manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """One entry per finished cell: its spec, values by (column, metric label), and records."""
    out = []
    for entry in manifest["cells"]:
        if entry.get("status") != "done":
            continue
        run = read_run(entry["run_dir"])
        evals = final_eval(run["records"])
        values = {m.label: metric_value(evals, m.key) for m in suite.metrics[entry["column"]]}
        values = {k: (v * m.scale if v is not None else None)
                  for (k, v), m in zip(values.items(), suite.metrics[entry["column"]])}
        out.append({**entry, "values": values, "records": run["records"]})
    return out


def _fmt(mean: float | None, sd: float | None) -> str:
    if mean is None:
        return "–"
    return f"{mean:.4g} ± {sd:.2g}" if sd else f"{mean:.4g}"


def summarize(suite: Suite, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """``cells[(row, column, metric)] = (mean, sd, n)`` and the comparisons with the baseline."""
    table: dict[tuple[str, str, str], tuple[float | None, float | None, int]] = {}
    per_seed: dict[tuple[str, str, str], dict[int, float]] = {}
    for row in suite.rows:
        for col in suite.columns:
            for m in suite.metrics[col["label"]]:
                vals = [r["values"][m.label] for r in runs if r["row"] == row["label"]
                        and r["column"] == col["label"] and r["values"][m.label] is not None]
                mean, sd = mean_sd(vals)
                table[(row["label"], col["label"], m.label)] = (mean, sd, len(vals))
                seeds: dict[int, list[float]] = {}
                for r in runs:
                    if (r["row"], r["column"]) == (row["label"], col["label"]) and \
                            r["values"][m.label] is not None:
                        seeds.setdefault(r["seed"], []).append(r["values"][m.label])
                per_seed[(row["label"], col["label"], m.label)] = {
                    s: statistics.fmean(v) for s, v in seeds.items()}
    comparisons = []
    base = (suite.compare or {}).get("baseline")
    if base:
        for row in suite.rows:
            if row["label"] == base:
                continue
            for col in suite.columns:
                for m in suite.metrics[col["label"]]:
                    a = table[(row["label"], col["label"], m.label)][0]
                    b = table[(base, col["label"], m.label)][0]
                    if a is None or b is None:
                        continue
                    sign = 1 if m.better == "higher" else -1
                    pa, pb = (per_seed[(k, col["label"], m.label)] for k in (row["label"], base))
                    common = sorted(set(pa) & set(pb))
                    margins = {s: sign * (pa[s] - pb[s]) for s in common}
                    comparisons.append({
                        "row": row["label"], "baseline": base, "column": col["label"],
                        "metric": m.label, "better": m.better, "margin": sign * (a - b),
                        "per_seed": margins, "wins": sum(v > 0 for v in margins.values()),
                        "seeds": common})
    return {"table": table, "comparisons": comparisons}


def _header(suite: Suite) -> list[str]:
    cols = []
    for col in suite.columns:
        for m in suite.metrics[col["label"]]:
            arrow = "↑" if m.better == "higher" else "↓"
            cols.append(f"{col['label']}: {m.label} {arrow}" if col["label"] else
                        f"{m.label} {arrow}")
    return ["method", "group", *cols]


def _rows(suite: Suite, summary: dict[str, Any]) -> list[list[str]]:
    out = []
    for row in suite.rows:
        cells = [row["label"], str(row.get("group", "FL"))]
        for col in suite.columns:
            for m in suite.metrics[col["label"]]:
                mean, sd, _ = summary["table"][(row["label"], col["label"], m.label)]
                cells.append(_fmt(mean, sd))
        out.append(cells)
    return out


def _runs_note(suite: Suite, runs: list[dict[str, Any]], manifest: dict[str, Any]) -> str:
    failed = [c for c in manifest["cells"] if c.get("status") == "failed"]
    reps = {r["label"]: len(r.get("replicas") or [[]]) for r in suite.rows}
    extra = ", ".join(f"{k}: {v} replicas" for k, v in reps.items() if v > 1)
    return (f"mean ± sd over seeds {', '.join(map(str, suite.seeds))}"
            + (f" ({extra}, pooled with the seeds)" if extra else "")
            + f"; {len(runs)} finished runs" + (f", {len(failed)} failed" if failed else ""))


def _comparison_lines(summary: dict[str, Any]) -> list[str]:
    lines = []
    for c in summary["comparisons"]:
        verdict = "beats" if c["margin"] > 0 else "does not beat"
        per = ", ".join(f"seed {s}: {v:+.4g}" for s, v in c["per_seed"].items())
        lines.append(f"{c['row']} {verdict} {c['baseline']} on {c['metric']}"
                     + (f" ({c['column']})" if c["column"] else "")
                     + f" by {c['margin']:+.4g} ({c['better']} is better; per seed: {per}; "
                     f"better in {c['wins']} of {len(c['seeds'])} seeds)")
    return lines


def _figures(suite: Suite, runs: list[dict[str, Any]], summary: dict[str, Any],
             out: Path) -> list[Path]:
    paths = []
    colors = {"FL": "#4c72b0", "local": "#dd8452"}
    for col in suite.columns:
        for m in suite.metrics[col["label"]]:
            labels, means, sds, cs = [], [], [], []
            for row in suite.rows:
                mean, sd, _ = summary["table"][(row["label"], col["label"], m.label)]
                if mean is None:
                    continue
                labels.append(row["label"])
                means.append(mean)
                sds.append(sd or 0.0)
                cs.append(colors.get(str(row.get("group", "FL")), "#55a868"))
            if not labels:
                continue
            fig, ax = new_figure(max(5.0, 0.9 * len(labels) + 2), 3.8)
            ax.bar(range(len(labels)), means, yerr=sds, capsize=4, color=cs)
            ax.set_xticks(range(len(labels)), labels, rotation=20, ha="right")
            ax.set_ylabel(m.label)
            arrow = "higher is better" if m.better == "higher" else "lower is better"
            set_title(ax, f"{m.label}{' — ' + col['label'] if col['label'] else ''} "
                      f"({arrow}; mean ± sd over runs) — {suite.name}")
            lo = min(x - s for x, s in zip(means, sds))
            hi = max(x + s for x, s in zip(means, sds))
            pad = (hi - lo) * 0.5 or abs(hi) * 0.05 or 1.0
            ax.set_ylim(max(0.0, lo - pad) if lo >= 0 else lo - pad, hi + pad)
            for i, (x, s) in enumerate(zip(means, sds)):
                ax.annotate(f"{x:.3g}", (i, x + s), ha="center", va="bottom", fontsize=8,
                            xytext=(0, 2), textcoords="offset points")
            name = f"bar-{_file(col['label'], m.label)}.png"
            paths.append(save(fig, out / name))
    # per-round curves: train loss and every curve key, mean over each row's runs
    keys = ["train_loss", *suite.curves]
    for col in suite.columns:
        for key in keys:
            fig, ax = new_figure(7, 3.8)
            drawn = False
            for row in suite.rows:
                mine = [r for r in runs if (r["row"], r["column"]) == (row["label"], col["label"])]
                by_round: dict[int, list[float]] = {}
                for r in mine:
                    for rec in r["records"]:
                        v = rec.get(key) if key == "train_loss" else (
                            metric_value(rec["eval"], key) if rec.get("eval") else None)
                        if v is not None:
                            by_round.setdefault(round_number(r["records"], rec), []).append(v)
                if by_round:
                    xs = sorted(by_round)
                    ax.plot(xs, [statistics.fmean(by_round[x]) for x in xs], marker="o",
                            markersize=3, label=row["label"])
                    drawn = True
            if not drawn:
                continue
            label = "train loss" if key == "train_loss" else next(
                (m.label for m in suite.metrics[col["label"]] if m.key == key), key)
            ax.set_xlabel("round")
            ax.set_ylabel(label)
            set_title(ax, f"{label}{' — ' + col['label'] if col['label'] else ''} per round "
                      f"(mean over each method's runs) — {suite.name}")
            ax.legend(fontsize=8)
            paths.append(save(fig, out / f"curve-{_file(col['label'], key)}.png"))
    return paths


def _file(*parts: str) -> str:
    import re

    return "-".join(filter(None, (re.sub(r"[^a-z0-9]+", "-", p.lower()).strip("-")
                                  for p in parts)))


def write_report(suite: Suite, manifest: dict[str, Any], out: Path) -> dict[str, Any]:
    """report.md, report.html, table.csv, results.csv and PNG figures under ``out``."""
    runs = collect(suite, manifest)
    summary = summarize(suite, runs)
    header, rows = _header(suite), _rows(suite, summary)
    note = _runs_note(suite, runs, manifest)
    comps = _comparison_lines(summary)
    figs = _figures(suite, runs, summary, out)
    md = [f"# {suite.title}", ""]
    if suite.description:
        md += [suite.description, ""]
    md += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    md += ["| " + " | ".join(r) + " |" for r in rows]
    md += ["", f"_{note}._", ""]
    if comps:
        md += ["## Margins", ""] + [f"- {c}" for c in comps] + [""]
    md += ["## Figures", ""] + [f"![{p.stem}]({p.name})" for p in figs] + [""]
    (out / "report.md").write_text("\n".join(md), encoding="utf-8")
    with open(out / "table.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["method", "group", "column", "metric", "better", "mean", "sd", "n"])
        for row in suite.rows:
            for col in suite.columns:
                for m in suite.metrics[col["label"]]:
                    mean, sd, n = summary["table"][(row["label"], col["label"], m.label)]
                    w.writerow([row["label"], row.get("group", "FL"), col["label"], m.label,
                                m.better, mean, sd, n])
    with open(out / "results.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        labels = sorted({k for r in runs for k in r["values"]})
        w.writerow(["cell", "method", "group", "column", "seed", "replica", *labels, "run_dir"])
        for r in runs:
            w.writerow([r["id"], r["row"], r["group"], r["column"], r["seed"], r["replica"],
                        *[r["values"].get(k) for k in labels], r["run_dir"]])
    esc = html.escape
    page = ["<!doctype html><html><head><meta charset='utf-8'>",
            f"<title>{esc(suite.title)}</title><style>body{{font-family:sans-serif;"
            "max-width:1100px;margin:2em auto}table{border-collapse:collapse}td,th{border:1px "
            "solid #ccc;padding:4px 8px;text-align:right}td:first-child,th:first-child{text-"
            "align:left}img{max-width:100%;display:block;margin:1em 0}</style></head><body>",
            f"<h1>{esc(suite.title)}</h1>"]
    if suite.description:
        page.append(f"<p>{esc(suite.description)}</p>")
    page.append("<table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr>")
    page += ["<tr>" + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>" for r in rows]
    page += ["</table>", f"<p><em>{esc(note)}.</em></p>"]
    if comps:
        page += ["<h2>Margins</h2><ul>"] + [f"<li>{esc(c)}</li>" for c in comps] + ["</ul>"]
    page += ["<h2>Figures</h2>"] + [f"<img alt='{esc(p.stem)}' src='{embed(p)}'>" for p in figs]
    page.append("</body></html>")
    (out / "report.html").write_text("\n".join(page), encoding="utf-8")
    return {"markdown": out / "report.md", "html": out / "report.html",
            "table": out / "table.csv", "results": out / "results.csv", "summary": summary}
