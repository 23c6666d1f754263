"""The ``fedllm`` command line.

The core owns ``run``, ``presets``, ``plugins``, ``doctor`` and ``eval``; installed
distributions add their own commands through ``fedllm_register_commands`` (entry-point group
``fedllm.commands``). Nothing heavy is imported at start-up: torch, transformers and datasets
load only inside the commands that need them, so ``fedllm --help`` answers at once.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from fedllm import __version__

# Nothing in fedllm should ever wait on the network by surprise; users who want hub
# downloads opt in by setting HF_HUB_OFFLINE=0 themselves.
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

CONTEXT = {"help_option_names": ["-h", "--help"]}


class _Consoles:
    """rich consoles, created on first use (stderr for progress and errors, stdout for results)."""

    @property
    def err(self):
        return _console(True)

    @property
    def out(self):
        return _console(False)


_CONSOLES: dict[bool, Any] = {}


def _console(stderr: bool):
    if stderr not in _CONSOLES:
        from rich.console import Console

        from fedllm.output import Console as StderrConsole

        _CONSOLES[stderr] = StderrConsole(stderr=True) if stderr else Console()
    return _CONSOLES[stderr]


consoles = _Consoles()


def escape(text: Any) -> str:
    """Plugin-written text shown through rich: ``[samples]`` is text, not a style tag."""
    from rich.markup import escape as _escape

    return _escape(str(text))


class FedLLMGroup(click.Group):
    """Turns a :class:`FedLLMError` into one clear message and exit code 2, no traceback."""

    def invoke(self, ctx):
        from fedllm.errors import FedLLMError

        try:
            return super().invoke(ctx)
        except FedLLMError as exc:
            consoles.err.print(f"[bold red]error:[/] {escape(exc)}", highlight=False,
                               soft_wrap=True)
            if os.environ.get("FEDLLM_DEBUG"):
                raise
            sys.exit(2)


@click.group(cls=FedLLMGroup, context_settings=CONTEXT)
@click.version_option(__version__, "-V", "--version", prog_name="fedllm")
@click.option("--trace-plugins", is_flag=True, envvar="FEDLLM_TRACE_PLUGINS",
              help="Log every plugin hook call (component, arguments, result) on stderr.")
@click.option("-q", "--quiet", is_flag=True,
              help="Only warnings and errors on stderr (no header, progress bars or notes); "
              "results still go to stdout.")
@click.option("-v", "--verbose", is_flag=True,
              help="Also the libraries' info logs and progress bars, and every repeat of "
              "their notices (e.g. bitsandbytes' 8-bit casts).")
def main(trace_plugins: bool, quiet: bool, verbose: bool) -> None:
    """Federated fine-tuning of large language models."""
    if quiet and verbose:
        raise click.UsageError("--quiet and --verbose exclude each other")
    if quiet or verbose:
        from fedllm.output import QUIET, VERBOSE, set_verbosity

        set_verbosity(QUIET if quiet else VERBOSE)
    if trace_plugins:
        from fedllm.plugins import set_tracing

        set_tracing(True)


# --------------------------------------------------------------------------- run


def _resume_rounds(overrides: tuple[str, ...]) -> int | None:
    """The one override ``--resume`` accepts: ``rounds=N``."""
    from fedllm.errors import ConfigError

    rounds = None
    for o in overrides:
        key, _, value = o.partition("=")
        if key.strip() != "rounds":
            raise ConfigError(f"--set {o!r}: --resume takes its config from the run directory; "
                              "the only key it accepts is rounds=N (to extend the run)")
        try:
            rounds = int(value)
        except ValueError:
            raise ConfigError(f"--set {o!r}: rounds must be an integer >= 1") from None
    return rounds


@main.command(context_settings=CONTEXT)
@click.argument("config", required=False, type=click.Path(dir_okay=False))
@click.option("--preset", default=None, metavar="NAME",
              help="Start from an installed preset instead of CONFIG, e.g. "
              "fedllm-bench/fed-aya-fedavg (list them with `fedllm presets`).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config key, e.g. --set rounds=20 --set algorithm.name=fedprox.")
@click.option("--dry-run", is_flag=True,
              help="Validate the config and run every component's checks (data sources, "
              "model config, hardware), print the resolved config and exit.")
@click.option("--check-data", is_flag=True,
              help="With --dry-run: also load the dataset and run the checks that need it "
              "(client counts, privacy calibration); slower.")
@click.option("--resume", "resume", type=click.Path(file_okay=False),
              help="Continue RUN_DIR from its last checkpoint; with --set rounds=N, extend it "
              "to N rounds.")
@click.option("--stop-after", type=int, default=None,
              help="Stop (with a checkpoint) once this many rounds are done.")
@click.option("--no-progress", is_flag=True, help="No progress bars (logs, CI).")
@click.option("--backend", default=None, metavar="NAME",
              help="Where clients run, e.g. in-process, flower-sim (= --set runtime.backend=NAME).")
def run(config, preset, overrides, dry_run, check_data, resume, stop_after, no_progress,
        backend) -> None:
    """Run a federated fine-tuning job (default: the embedded tiny model and dataset)."""
    from fedllm.config import build_config, resolve
    from fedllm.errors import FedLLMError

    console, out = consoles.err, consoles.out
    if resume:
        rounds = _resume_rounds(overrides)
        if config or backend or dry_run or preset:
            raise FedLLMError("--resume takes its config from the run directory; do not pass "
                              "CONFIG, --preset, --backend or --dry-run with it")
        from fedllm.engine import Engine

        engine = Engine.resume(Path(resume), rounds=rounds, console=console,
                               progress=not no_progress)
    else:
        if backend:
            overrides = [*overrides, f"runtime.backend={backend}"]
        base = None
        if preset:
            from fedllm.presets import preset_config

            if config:
                raise FedLLMError("give CONFIG or --preset, not both (override a preset's "
                                  "keys with --set)")
            base = preset_config(preset)
        resolved = resolve(build_config(config, list(overrides), base=base))
        if dry_run:
            import yaml

            from fedllm.context import build_context, prepare

            prepare(build_context(resolved, console=console), load_data=check_data)
            out.print(escape(yaml.safe_dump(resolved.to_dict(), sort_keys=False)),
                      highlight=False, end="")
            console.print("[green]checks passed[/]: config, plugins, model config, hardware"
                          + (", data" if check_data else " (--check-data also loads the data)"))
            return
        from fedllm.engine import Engine

        engine = Engine.new(resolved, console=console, progress=not no_progress)
    result = engine.run(until_round=stop_after)
    out.print(engine.summary_table())
    out.print(f"run directory: {escape(result['run_dir'])}", highlight=False)


# --------------------------------------------------------------------------- plugins

KIND_NAMES = ["algorithm", "sampler", "dataset", "task", "peft", "privacy", "evaluator",
              "judge", "codec", "backend", "command", "preset"]


@main.group(invoke_without_command=True, context_settings=CONTEXT)
@click.option("--kind", type=click.Choice(KIND_NAMES), help="Only components of this kind.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def plugins(ctx, kind, as_json) -> None:
    """List installed components; `plugins show NAME` for one's options,
    `plugins new KIND NAME` to start your own."""
    if ctx.invoked_subcommand:
        return
    from fedllm.plugins import discover

    infos = discover(kind)
    if as_json:
        click.echo(json.dumps([{
            "kind": i.kind, "name": i.name, "distribution": i.distribution,
            "version": i.version, "status": i.status, "description": i.description,
            "entry_point": i.entry_point, "error": i.error, "warning": i.warning}
            for i in infos], indent=2))
        return
    from rich.table import Table

    t = Table(title="fedllm plugins")
    for col in ("kind", "name", "distribution", "version", "status", "description"):
        t.add_column(col)
    style = {"ok": "green", "broken": "red", "incompatible": "yellow"}
    for i in infos:
        text = i.error or (f"{i.warning}. {i.description}" if i.warning else i.description)
        t.add_row(i.kind, i.name, escape(i.distribution), escape(i.version),
                  f"[{style[i.status]}]{i.status}[/]",
                  f"[red]{escape(text)}[/]" if i.error else escape(text))
    consoles.out.print(t)


@plugins.command("show", context_settings=CONTEXT)
@click.argument("name")
@click.option("--kind", type=click.Choice(KIND_NAMES), default=None,
              help="Disambiguate when several kinds share NAME.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def plugins_show(name, kind, as_json) -> None:
    """Show a component's hooks, capabilities and config: fields, types, defaults, help."""
    from fedllm.errors import PluginNotFoundError
    from fedllm.plugins import GROUPS, installed_names, load, suggest

    kinds = [kind] if kind else [k for k in GROUPS if name in installed_names(k)]
    if not kinds:
        every = sorted({n for k in GROUPS for n in installed_names(k)})
        raise PluginNotFoundError(f"no installed plugin is named {name!r}.{suggest(name, every)}"
                                  " List them with `fedllm plugins`.")
    from rich.table import Table

    shown = []
    for k in kinds:
        info = load(k, name)
        schema = info.plugin.Config.model_json_schema() if info.plugin.Config else {}
        fields = list(_fields(schema, schema.get("properties", {})))
        if as_json:
            shown.append({"kind": k, "name": name, "distribution": info.distribution,
                          "version": info.version, "description": info.plugin.description,
                          "hooks": sorted(_hooks_of(info)), "fields": {
                              f: {"type": _type_of(spec), "default": spec.get("default"),
                                  "required": "default" not in spec,
                                  "help": spec.get("description", "")}
                              for f, spec in fields}})
            continue
        t = Table(title=escape(f"{k} {name} — {info.distribution} {info.version}"),
                  caption=escape(info.plugin.description))
        t.add_column("field", no_wrap=True, min_width=max([len(f) for f, _ in fields] + [5]))
        for col in ("type", "default", "help"):
            t.add_column(col)
        for field, spec in fields:
            t.add_row(escape(field), escape(_type_of(spec)),
                      escape(json.dumps(spec.get("default"))) if "default" in spec
                      else "[bold]required[/]", escape(spec.get("description", "")))
        consoles.out.print(t)
        hooks = sorted(_hooks_of(info))
        if hooks:
            consoles.out.print("hooks: " + ", ".join(hooks), highlight=False)
    if as_json:
        click.echo(json.dumps(shown, indent=2, default=str))


def _hooks_of(info) -> list[str]:
    from fedllm.plugins import verify

    factory = info.plugin.factory
    if not isinstance(factory, type):
        return []
    pm = verify(info.kind, info.name, factory)
    return [c.name for c in pm.get_hookcallers(factory) or []]


def _fields(schema: dict, props: dict, prefix: str = ""):
    """(dotted name, spec) of every field, nested config models included (``a.b``)."""
    for field, spec in props.items():
        yield prefix + field, spec
        refs = [spec.get("$ref")] + [s.get("$ref") for s in spec.get("anyOf", [])]
        for ref in filter(None, refs):
            sub = schema.get("$defs", {}).get(ref.split("/")[-1], {})
            yield from _fields(schema, sub.get("properties", {}), f"{prefix}{field}.")


def _type_of(spec: dict) -> str:
    if "enum" in spec:
        return " | ".join(map(json.dumps, spec["enum"]))
    if "anyOf" in spec:
        return " | ".join(_type_of(s) for s in spec["anyOf"])
    if spec.get("type") == "array":
        return f"list[{_type_of(spec.get('items', {}))}]"
    return spec.get("type", spec.get("$ref", "any").split("/")[-1])


@plugins.command("new", context_settings=CONTEXT)
@click.argument("kind", type=click.Choice(KIND_NAMES))
@click.argument("name")
@click.argument("directory", required=False, type=click.Path(file_okay=False))
def plugins_new(kind, name, directory) -> None:
    """Write a complete, installable plugin package for a new KIND component NAME
    (default directory: ./fedllm-NAME): pyproject with the entry point, config, one hook,
    a README and tests written with fedllm.testing that pass as generated."""
    from fedllm.scaffold import new_plugin

    target = new_plugin(kind, name, Path(directory) if directory else None)
    consoles.out.print(f"wrote {escape(target)}\nnext: pip install -e {escape(target)} && "
                       f"pytest {escape(target)}", highlight=False)


# --------------------------------------------------------------------------- presets


@main.command("presets", context_settings=CONTEXT)
@click.argument("prefix", required=False)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (with configs).")
def presets_cmd(prefix, as_json) -> None:
    """List the installed presets (`fedllm run --preset NAME`), optionally only those whose
    name starts with PREFIX; `fedllm run --preset NAME --dry-run` shows one resolved."""
    from fedllm.presets import list_presets

    found = [p for p in list_presets() if not prefix or p.name.startswith(prefix)]
    if as_json:
        click.echo(json.dumps([{"name": p.name, "summary": p.summary,
                                "distribution": p.distribution, "version": p.version,
                                "config": p.config} for p in found], indent=2))
        return
    from rich.table import Table

    t = Table(title="fedllm presets", caption="fedllm run --preset NAME [--set KEY=VALUE ...]")
    t.add_column("name", no_wrap=True)
    t.add_column("summary")
    for p in found:
        t.add_row(escape(p.name), escape(p.summary))
    consoles.out.print(t)


# --------------------------------------------------------------------------- doctor


@main.command(context_settings=CONTEXT)
@click.argument("config", required=False, type=click.Path(dir_okay=False))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config key, as for `fedllm run`.")
def doctor(config, overrides) -> None:
    """Versions of the stack, the hardware found, and what a run (CONFIG) will use."""
    from fedllm.doctor import report

    consoles.out.print(report(config, list(overrides)))


# --------------------------------------------------------------------------- eval


@main.command("eval", context_settings=CONTEXT)
@click.argument("target", type=click.Path(exists=True, file_okay=False))
@click.option("--evaluator", "evaluators", multiple=True, metavar="NAME",
              help="Evaluator to run (repeatable); default: the run config's evaluators.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override config, e.g. --set mt-bench.judge.model=gpt-4o or "
              "--set evaluators.0.max_samples=10.")
@click.option("--judge-repeats", type=int, default=None,
              help="Grade every answer N times; report mean ± sd.")
@click.option("--output", type=click.Path(file_okay=False), default=None,
              help="Where eval/<evaluator>/ goes (default: TARGET).")
@click.option("--json", "as_json", is_flag=True, help="Print the scores as JSON.")
def eval_cmd(target, evaluators, overrides, judge_repeats, output, as_json) -> None:
    """Score a run directory or a PEFT adapter with evaluator plugins
    (MT-Bench, Vicuna, AdvBench, Ref-GPT4, MMLU, HumanEval ...)."""
    from fedllm.cli.evaluate import evaluate_target, results_table

    results = evaluate_target(target, list(evaluators), list(overrides), judge_repeats,
                              output, consoles.err)
    if as_json:
        click.echo(json.dumps(results, indent=2, default=str))
    else:
        consoles.out.print(results_table(results))
        consoles.out.print(f"details: {escape(Path(output or target) / 'eval')}",
                           highlight=False)


# --------------------------------------------------------------------------- plugin commands


def register_plugin_commands(cli: click.Group) -> list[str]:
    """Let every ``fedllm.commands`` component add its commands; a broken one is reported on
    stderr, never fatal (the rest of the CLI must keep working). Returns the problems."""
    from fedllm.plugins import build, discover

    problems = []
    for info in discover("command", compatibility=False):
        try:
            if info.error:
                raise RuntimeError(info.error)
            config = info.plugin.Config() if info.plugin.Config is not None else None
            build(info, config).call("fedllm_register_commands", cli=cli)
        except Exception as exc:  # noqa: BLE001 - reported, the CLI goes on
            problems.append(f"command plugin {info.name!r} ({info.distribution}) failed to "
                            f"load: {exc}")
    for p in problems:
        click.echo(f"warning: {p}", err=True)
    return problems


register_plugin_commands(main)

if __name__ == "__main__":
    main()
