"""The round engine: sample → local updates → privatize → aggregate → evaluate, per cohort.

It knows hooks and component kinds, never a particular algorithm, dataset or evaluator.
"""

from __future__ import annotations

import datetime as _dt
import errno
import itertools
import random
import resource
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from .card import model_card
from .codecs import Wire
from .config import ResolvedConfig, lr_at
from .context import RunContext, build_context, load_runtime, prepare
from .errors import ConfigError, FedLLMError, RunDirError
from .evaluation import evaluate_model, server_model
from .guard import screen
from .messages import ClientInstruction, ClientUpdate, Params, RoundReport, nbytes
from .output import QUIET, verbosity
from .output import Console as StderrConsole
from .rundir import CKPT_FORMAT, RunDir
from .state import ClientStateStore
from .trackers import Trackers


def client_seed(run_seed: int, round: int, client_id: str) -> int:
    """Per (run, round, client) seed for the data draw and dropout: independent of which
    other clients were sampled, so resumed and distributed runs reproduce it."""
    return random.Random(f"{run_seed}:{round}:{client_id}").getrandbits(31)


def peak_memory_mb() -> dict[str, float]:
    out = {"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if torch.cuda.is_available():
        out["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return out


@dataclass
class _Totals:
    """A round's running sums over its cohorts."""

    down: int = 0
    up: int = 0
    loss: float = 0.0
    weight: float = 0.0


def _config_of(resolved: ResolvedConfig) -> dict[str, Any]:
    """What a checkpoint records of the config: everything but the plugin versions."""
    out = resolved.to_dict()
    out.pop("plugins", None)
    return out


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def _same_config(meta: dict[str, Any], resolved: ResolvedConfig, rd: RunDir) -> None:
    """Refuse to resume when config.yaml no longer says what the checkpoint was written with
    (``rounds`` aside: :func:`_extension_problems` decides a change of it)."""
    then = meta.get("config")
    if then is None:  # a checkpoint from before fedllm recorded it
        return
    a, b = _flat(then), _flat(_config_of(resolved))
    changed = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k) and k != "rounds")
    if changed:
        shown = ", ".join(f"{k} ({a.get(k)!r} → {b.get(k)!r})" for k in changed[:8])
        raise RunDirError(f"{rd.path / 'config.yaml'} no longer matches the config its "
                          f"checkpoint of round {meta['round']} was written with: {shown}"
                          f"{' ...' if len(changed) > 8 else ''}. Restore those keys, or start "
                          "a new run with the new config")


def _refuse_if_empty(updates: Iterator[ClientUpdate], rejected: list[str], cohort: str,
                     r: int) -> Iterator[ClientUpdate]:
    """The updates to fold; a clear error when the guard rejected every one of them."""
    any_kept = False
    for u in updates:
        any_kept = True
        yield u
    if not any_kept and rejected:
        raise FedLLMError(
            f"round {r + 1}: every client update of cohort {cohort!r} was rejected "
            f"({', '.join(rejected)}: non-finite values or beyond guard.max_update_norm; see "
            "the warnings above), so there is nothing to aggregate. A learning rate too high "
            "for the model is the usual cause (train.lr); the run stops with its last "
            "checkpoint intact")


def _extension_problems(ctx: RunContext, before: int, done: int) -> list[str]:
    """Why a run planned for ``before`` rounds, ``done`` of them run, cannot continue to
    ``ctx.config.rounds`` and still equal a run with that many rounds from the start."""
    cfg = ctx.config
    after = cfg.rounds
    if after < done:
        return [f"rounds: {after} is fewer than the {done} rounds the run has already done; "
                f"allowed: rounds >= {done}"]
    why = []
    private = [c.name for c in ctx.plugins.of("privacy")]
    if private:
        why.append(f"privacy {', '.join(private)}: the noise and the ε budget were calibrated "
                   f"for {before} rounds; more rounds would spend privacy the run never "
                   "planned for. Start a new run")
    if cfg.schedule_rounds is None:
        planners = [f"{c.kind} {c.name}" for c in ctx.plugins.all if c.cap("plans_rounds")]
        cosine = cfg.train.schedule == "cosine"
        if cosine:
            planners.insert(0, "train.schedule cosine")
        if planners:
            why.append(f"{', '.join(planners)} planned for rounds={before}, so rounds 1–"
                       f"{done} differ from those of a {after}-round run. Start a run you may "
                       "extend with --set schedule_rounds=MAX (the plan; rounds may then grow "
                       "up to and past it)" + (", or with train.schedule=constant" if cosine
                                               else ""))
    return why


class Engine:
    """One federated run. ``Engine(resolved).run()`` or ``Engine.resume(run_dir).run()``."""

    def __init__(self, resolved: ResolvedConfig, *, console: Console | None = None,
                 run_dir: RunDir | None = None, resume: bool = False, progress: bool = True):
        self.resolved = resolved
        self.cfg = resolved.run
        self.console = console or StderrConsole(stderr=True)
        self._run_dir = run_dir
        self.resuming = resume
        self.show_progress = progress and verbosity() > QUIET
        self.globals: dict[str, Params] = {}
        self.states: dict[str, dict[str, Any]] = {}
        self.cohorts: dict[str, list[str]] = {}
        self.history: list[dict[str, Any]] = []

    @property
    def run_dir(self) -> RunDir:
        if self._run_dir is None:
            raise RunDirError("the run directory does not exist yet")
        return self._run_dir

    @run_dir.setter
    def run_dir(self, value: RunDir) -> None:
        self._run_dir = value

    # -- construction ---------------------------------------------------------------------

    @classmethod
    def new(cls, resolved: ResolvedConfig, *, ctx: RunContext | None = None, **kw) -> "Engine":
        """Check everything and load the model and data *before* creating the run directory,
        so bad input leaves no files behind. ``ctx`` may be a context built by the caller
        (e.g. a Flower ServerApp whose backend holds the Grid)."""
        eng = cls(resolved, **kw)
        eng._setup(ctx)
        name = eng.cfg.name or _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        eng.run_dir = RunDir.create(Path(eng.cfg.output_dir) / name, resolved.to_dict())
        eng._start()
        return eng

    @classmethod
    def resume(cls, path: Path, *, rounds: int | None = None, ctx_factory=None,
               **kw) -> "Engine":
        """Continue a run from its newest intact checkpoint. A damaged newer checkpoint is
        skipped (with a message), a config.yaml edited since the checkpoint is refused naming
        the keys, and all of it is decided before the model loads.

        ``rounds`` extends (or finishes earlier) a run: allowed when the result equals a run
        with that many rounds from the start (see :func:`_extension_problems`); config.yaml
        then says the new length and a finished run's final adapter is removed (it is the
        checkpoint of its last round, and a new one is written at the end)."""
        from .config import resolve

        rd = RunDir.open(path)
        data = rd.config()
        if rounds is not None:
            data["rounds"] = rounds
        resolved = resolve(data)
        latest = rd.latest_checkpoint()
        before = resolved.run.rounds
        if latest is not None:
            if latest[1].get("format", 1) < CKPT_FORMAT:
                raise RunDirError(f"{rd.path} was written by fedllm 0.1, which numbered rounds "
                                  "from 0; resume it with fedllm 0.1, or start a new run")
            _same_config(latest[1], resolved, rd)
            before = latest[1].get("config", {}).get("rounds", before)
        elif rd.metrics():
            raise RunDirError(f"{rd.path}: metrics.jsonl records rounds but no checkpoint "
                              "exists (checkpoint_every=0?); the run cannot be resumed exactly")
        eng = cls(resolved, run_dir=rd, resume=True, **kw)
        eng._latest = latest
        ctx = ctx_factory(resolved) if ctx_factory else build_context(resolved,
                                                                        console=eng.console)
        if before != resolved.run.rounds:
            done = latest[1]["round"] if latest is not None else 0
            why = _extension_problems(ctx, before, done)
            if why:
                raise ConfigError(f"--set rounds={resolved.run.rounds}: {rd.path} cannot "
                                  f"continue from {before} to {resolved.run.rounds} rounds "
                                  "exactly: " + "; ".join(why))
        eng._setup(ctx)
        if before != resolved.run.rounds:
            rd.write_config(resolved.to_dict())
            for cohort in eng.cohorts:
                shutil.rmtree(rd.adapter_dir(cohort, len(eng.cohorts) == 1),
                              ignore_errors=True)
        eng._start()
        return eng

    def _setup(self, ctx: RunContext | None) -> None:
        self.ctx = ctx or build_context(self.resolved, console=self.console)
        prepare(self.ctx)
        load_runtime(self.ctx)
        self.cohorts = self.ctx.cohorts
        initial = self.ctx.get_params()
        self.globals = {c: {k: v.clone() for k, v in initial.items()} for c in self.cohorts}
        self.states = {c: {} for c in self.cohorts}

    def _start(self) -> None:
        self.ctx.run_dir = self.run_dir.path
        self.ctx.client_state = ClientStateStore(self.run_dir.path / "client_state")
        self.ctx.progress = self.show_progress  # evaluators' progress bars follow --no-progress
        self.trackers = Trackers(self.ctx)  # runtime.trackers ([]: none); needs ctx.run_dir
        self.ctx.call("fedllm_backend_start")

    # -- checkpoints ----------------------------------------------------------------------

    def _checkpoint(self, round: int) -> None:
        tensors: dict[str, torch.Tensor] = {}
        meta_state: dict[str, dict[str, Any]] = {}
        for c in self.cohorts:
            for k, v in self.globals[c].items():
                tensors[f"cohort/{c}/global/{k}"] = v
            meta_state[c] = {}
            for k, v in self.states[c].items():
                if isinstance(v, torch.Tensor):
                    tensors[f"cohort/{c}/state/{k}"] = v
                else:
                    meta_state[c][k] = v
        # Every random draw is seeded by (run seed, round, client), so no RNG state is needed.
        meta = {"state": meta_state, "cohorts": list(self.cohorts),
                "config": _config_of(self.resolved)}
        self.run_dir.save_checkpoint(round, tensors, meta, keep=self.cfg.keep_checkpoints)
        self.ctx.state.mark_checkpoint(self.run_dir.checkpoint_rounds())

    _latest: Any = None

    def _restore(self) -> int:
        """Load the newest intact checkpoint; return the first round still to run."""
        loaded = self._latest
        if loaded is None:
            last = -1
        else:
            tensors, meta, skipped = loaded
            last = meta["round"] - 1
            for why in skipped:
                self.console.print(f"[yellow]warning:[/] skipped damaged checkpoint {why}",
                                   highlight=False)
            if skipped:
                self.console.print(f"resuming from the intact checkpoint of round {last + 1}",
                                   highlight=False)
            if list(self.cohorts) != meta["cohorts"]:
                raise RunDirError(f"checkpoint cohorts {meta['cohorts']} differ from this "
                                  f"config's {list(self.cohorts)}")
            for c in self.cohorts:
                g = f"cohort/{c}/global/"
                s = f"cohort/{c}/state/"
                self.globals[c] = {k[len(g):]: v for k, v in tensors.items() if k.startswith(g)}
                st = {k[len(s):]: v for k, v in tensors.items() if k.startswith(s)}
                st.update(meta["state"].get(c, {}))
                self.states[c] = st
        self.history = self.run_dir.metrics()
        if self.run_dir.torn_metrics:
            self.console.print("[yellow]warning:[/] dropped a torn last line of metrics.jsonl "
                               "(a crash while it was written)", highlight=False)
        self.run_dir.truncate_metrics(last + 1)
        self.ctx.state.rollback(last)
        self.history = self.run_dir.metrics()
        return last + 1

    # -- the loop -------------------------------------------------------------------------

    def run(self, until_round: int | None = None) -> dict[str, Any]:
        """Run the remaining rounds (or stop after ``until_round`` rounds are done)."""
        try:
            return self._run(until_round)
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            done = len(self.history)
            raise FedLLMError(
                f"the disk is full ({exc.filename or self.run_dir.path}): the run stopped "
                f"after {done} round(s); its directory is consistent up to its last checkpoint. "
                f"Free some space and continue with `fedllm run --resume {self.run_dir.path}`"
            ) from None
        finally:
            self.trackers.end()
            self.ctx.call("fedllm_backend_close")

    def _run(self, until_round: int | None) -> dict[str, Any]:
        cfg = self.cfg
        start = self._restore() if self.resuming else 0
        stop = cfg.rounds if until_round is None else min(cfg.rounds, until_round)
        self._header(start)
        progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TimeElapsedColumn(), console=self.console,
                            disable=not self.show_progress, transient=False)
        with progress:
            rounds_task = progress.add_task("rounds", total=cfg.rounds, completed=start)
            clients_task = progress.add_task("clients", total=0)
            for r in range(start, stop):
                record = self._round(r, progress, clients_task)
                loss = record.get("train_loss")
                progress.update(rounds_task, advance=1, description="rounds" + (
                    f" (loss {loss:.4f})" if loss is not None else ""))
        if stop == cfg.rounds and start <= cfg.rounds:
            self._save_final()
        elif stop > start and cfg.checkpoint_every == 0:
            self._checkpoint(stop - 1)
        return {"run_dir": str(self.run_dir.path), "history": self.history}

    def _round(self, r: int, progress: Progress, clients_task) -> dict[str, Any]:
        cfg, ctx = self.cfg, self.ctx
        t0 = time.perf_counter()
        lr = lr_at(cfg.train, r, cfg.planned_rounds)
        record: dict[str, Any] = {"round": r + 1, "lr": lr, "cohorts": {}}
        totals = _Totals()
        for cohort, members in self.cohorts.items():
            record["cohorts"][cohort] = self._cohort_round(
                cohort, members, r, lr, totals, record, progress, clients_task)
        record["train_loss"] = totals.loss / totals.weight if totals.weight else None
        record["bytes_down"] = totals.down
        record["bytes_up"] = totals.up
        last = r == cfg.rounds - 1
        if last or (cfg.eval_every and (r + 1) % cfg.eval_every == 0):
            record["eval"] = self.evaluate(r)
        record["wall_s"] = time.perf_counter() - t0
        record.update(peak_memory_mb())
        ctx.each("fedllm_round_end", round=r, record=record)
        self.run_dir.append_metrics(record)
        self.trackers.log(record, step=r + 1)  # the round as metrics.jsonl counts it
        self.history.append(record)
        if cfg.checkpoint_every and ((r + 1) % cfg.checkpoint_every == 0 or last):
            self._checkpoint(r)
        return record

    def _cohort_round(self, cohort: str, members: list[str], r: int, lr: float,
                      totals: _Totals, record: dict[str, Any], progress: Progress,
                      clients_task) -> dict[str, Any]:
        """One cohort's round: sample, instruct, run the clients, privatize, aggregate.
        Returns the cohort's part of the round record."""
        ctx, cfg = self.ctx, self.cfg
        selected = ctx.call("fedllm_sample", cohort=cohort, clients=list(members), round=r)
        sampler = ctx.plugins.provider("fedllm_sample")
        may_be_empty = sampler is not None and sampler.kind == "sampler" and \
            sampler.cap("sampling") == "poisson"
        if selected is None or (not selected and not may_be_empty) \
                or not set(selected) <= set(members):
            raise FedLLMError(f"round {r + 1}: the sampler returned {selected!r}, which is not "
                              f"a non-empty subset of cohort {cohort!r}")
        selected = list(selected)
        progress.reset(clients_task, total=len(selected),
                       description=f"round {r + 1}/{cfg.rounds} clients"
                       + (f" [{cohort}]" if len(self.cohorts) > 1 else ""))
        glob, state = self.globals[cohort], self.states[cohort]
        per_client: dict[str, dict[str, Any]] = {}
        wire = Wire(ctx, cohort, r, glob)  # message codecs (a no-op without them)

        def instructions() -> Iterator[ClientInstruction]:
            for cid in selected:
                ins = ClientInstruction(cohort=cohort, round=r, client_id=cid, params=glob,
                                        lr=lr, seed=client_seed(cfg.seed, r, cid))
                ctx.call("fedllm_configure_client", cohort=cohort, round=r, instruction=ins,
                         state=state)
                ins = wire.down(ins)
                totals.down += nbytes(ins.params) + nbytes(ins.extras)
                yield ins

        rejected: list[str] = []

        def tracked(it: Iterator[ClientUpdate]) -> Iterator[ClientUpdate]:
            for u in it:
                totals.up += nbytes(u.params) + nbytes(u.extras)
                u = wire.up(u)
                kept, why, norm = screen(u, glob, cfg.guard)
                for m in u.clients():
                    n, metrics = m["num_samples"], m["metrics"]
                    entry = per_client[m["client_id"]] = {"num_samples": n, **metrics}
                    if norm is not None:
                        entry["update_norm"] = norm
                    if why is not None:
                        entry["rejected" if kept is None else "clipped"] = why
                    if kept is not None and "train_loss" in metrics:
                        totals.loss += metrics["train_loss"] * n
                        totals.weight += n
                    progress.advance(clients_task)
                if kept is None:
                    rejected.append(u.client_id)
                    ctx.console.print(f"[yellow]warning:[/] round {r + 1}: rejected the update "
                                      f"of {u.client_id}: {why}", highlight=False)
                    continue
                yield kept

        report: RoundReport = ctx.call("fedllm_run_clients", cohort=cohort, round=r,
                                       instructions=instructions())
        updates = tracked(report.updates)
        for _, out in ctx.each("fedllm_privatize_updates", cohort=cohort, round=r,
                               global_params=glob, updates=updates, clients=list(selected)):
            if out is not None:
                updates = out
        first = next(updates, None)
        if first is None and not rejected:  # a Poisson round without clients: θ stays
            new = glob
        else:
            stream = itertools.chain([first] if first is not None else [], updates)
            new = ctx.call("fedllm_aggregate", cohort=cohort, round=r, global_params=glob,
                           updates=_refuse_if_empty(stream, rejected, cohort, r), state=state)
        if new is None:
            raise FedLLMError("the algorithm returned no aggregate from fedllm_aggregate")
        dropped = [c for c in report.dropped if c in selected]
        if len(per_client) + len(dropped) != len(selected):
            raise FedLLMError(f"the algorithm consumed {len(per_client)} of "
                              f"{len(selected)} client updates in round {r + 1}")
        self.globals[cohort] = {k: v.detach().to("cpu", torch.float32) for k, v in new.items()}
        for k, v in report.stats.items():
            record[k] = record.get(k, 0) + v  # e.g. serialised bytes on the wire
        wire.record(record)
        out_rec: dict[str, Any] = {"sampled": selected, "clients": per_client}
        if dropped:
            out_rec["dropped"] = dropped
        return out_rec

    def evaluate(self, r: int) -> dict[str, Any]:
        return {cohort: evaluate_model(self.ctx, self.globals[cohort], cohort, r)
                for cohort in self.cohorts}

    def _save_final(self) -> None:
        single = len(self.cohorts) == 1
        config = self.run_dir.config()
        for cohort in self.cohorts:
            model = server_model(self.ctx, self.globals[cohort])
            target = self.run_dir.adapter_dir(cohort, single)
            card = model_card(config, self.history, title=f"{self.run_dir.path.name}"
                              + ("" if single else f" ({cohort})"), adapter=str(target),
                              cohort=None if single else cohort)
            self.run_dir.save_adapter(
                model, target, tokenizer=self.ctx.tokenizer,
                base_model=self.cfg.model.name_or_path, revision=self.cfg.model.revision,
                card=card)

    # -- output ---------------------------------------------------------------------------

    def _header(self, start: int) -> None:
        parts = [f"{c.kind}:{c.name} ({c.info.distribution} {c.info.version})"
                 for c in self.ctx.plugins.all]
        self.console.print(f"[bold]fedllm[/] run [cyan]{self.run_dir.path}[/]"
                           + (f" (resuming at round {start + 1})" if start else ""))
        self.console.print("plugins: " + ", ".join(parts), highlight=False)
        ds = self.ctx.data
        k = self.cfg.clients_per_round
        small = {c: len(m) for c, m in self.cohorts.items() if len(m) < k}
        if small:
            which = (f"the federation has {next(iter(small.values()))} clients"
                     if len(self.cohorts) == 1 else
                     f"{len(small)} of {len(self.cohorts)} cohorts have "
                     f"{min(small.values())}–{max(small.values())} clients")
            self.console.print(f"[yellow]note:[/] clients_per_round={k} but {which}: "
                               "those sample every client every round", highlight=False)
        adapter = nbytes(self.globals[next(iter(self.globals))])
        self.console.print(f"data: {len(ds.clients)} clients, {len(ds.train)} training samples"
                           + (f", {len(ds.heldout)} held out" if ds.heldout is not None else "")
                           + f"; trainable adapter: {adapter:,} bytes", highlight=False)

    def summary_table(self) -> Table:
        t = Table(title=f"fedllm run {self.run_dir.path.name}")
        t.add_column("round", justify="right")
        t.add_column("clients", justify="right")
        t.add_column("train loss", justify="right")
        t.add_column("eval", justify="left", no_wrap=True, min_width=24)
        t.add_column("wall s", justify="right")
        t.add_column("KiB ↓/↑", justify="right")
        # Privacy plugins report {"privacy": {name: {"epsilon": ...}}} in the record.
        show_eps = any(rec.get("privacy") for rec in self.history)
        if show_eps:
            t.add_column("ε spent", justify="right")
        for rec in self.history:
            n = sum(len(c["sampled"]) for c in rec["cohorts"].values())
            ev = []  # the first number each evaluator reports, e.g. "heldout-loss loss=3.71"
            for cohort, res in (rec.get("eval") or {}).items():
                for name, vals in res.items():
                    k, v = next(((k, v) for k, v in vals.items()
                                 if isinstance(v, (int, float)) and not isinstance(v, bool)),
                                (None, None))
                    if k is not None:
                        pre = f"{cohort}/" if len(rec["cohorts"]) > 1 else ""
                        ev.append(f"{pre}{name} {k}={v:.4g}")
            loss = rec.get("train_loss")
            row = [str(rec["round"]), str(n), f"{loss:.4f}" if loss is not None else "-",
                   "\n".join(ev[:6]), f"{rec['wall_s']:.1f}",
                   f"{rec['bytes_down'] / 1024:,.0f}/{rec['bytes_up'] / 1024:,.0f}"]
            if show_eps:
                eps = [f"{v['epsilon']:.4g}" if isinstance(v.get("epsilon"), (int, float))
                       else "-" for v in (rec.get("privacy") or {}).values()]
                row.append(", ".join(eps) or "-")
            t.add_row(*row)
        return t

