"""The ``fedllm`` command line."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

# Nothing in fedllm should ever wait on the network by surprise; users who want hub
# downloads opt in by setting HF_HUB_OFFLINE=0 themselves.
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import click
from rich.console import Console

from fedllm import __version__
from fedllm.errors import FedLLMError

console = Console(stderr=True)
out = Console()


class FedLLMGroup(click.Group):
    """Turns a :class:`FedLLMError` into one clear line and exit code 2, no traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except FedLLMError as exc:
            console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            if os.environ.get("FEDLLM_DEBUG"):
                raise
            sys.exit(2)


@click.group(cls=FedLLMGroup)
@click.version_option(__version__, prog_name="fedllm")
def main() -> None:
    """Federated fine-tuning of large language models."""


@main.command()
@click.argument("config", required=False, type=click.Path(dir_okay=False))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config key, e.g. --set rounds=20 --set algorithm.name=fedprox.")
@click.option("--dry-run", is_flag=True, help="Print the resolved, validated config and exit.")
@click.option("--resume", "resume", type=click.Path(file_okay=False),
              help="Continue RUN_DIR from its last checkpoint.")
@click.option("--stop-after", type=int, default=None,
              help="Stop (with a checkpoint) once this many rounds are done.")
@click.option("--no-progress", is_flag=True, help="No progress bars (logs, CI).")
@click.option("--backend", default=None, metavar="NAME",
              help="Where clients run, e.g. in-process, flower-sim (= --set runtime.backend=NAME).")
def run(config, overrides, dry_run, resume, stop_after, no_progress, backend) -> None:
    """Run a federated fine-tuning job (default: the embedded tiny model and dataset)."""
    import yaml

    from fedllm.config import build_config, resolve

    if resume:
        if config or overrides or backend:
            raise FedLLMError("--resume takes its config from the run directory; "
                              "do not pass CONFIG or --set with it")
        from fedllm.engine import Engine

        engine = Engine.resume(Path(resume), console=console, progress=not no_progress)
    else:
        if backend:
            overrides = [*overrides, f"runtime.backend={backend}"]
        resolved = resolve(build_config(config, list(overrides)))
        if dry_run:
            out.print(yaml.safe_dump(resolved.to_dict(), sort_keys=False), highlight=False,
                      end="")
            return
        from fedllm.engine import Engine

        engine = Engine.new(resolved, console=console, progress=not no_progress)
    result = engine.run(until_round=stop_after)
    out.print(engine.summary_table())
    adapter = Path(result["run_dir"])
    out.print(f"run directory: {adapter}", highlight=False)


# --------------------------------------------------------------------------- plugins


@main.group(invoke_without_command=True)
@click.option("--kind", type=click.Choice(sorted(__import__("fedllm.plugins", fromlist=["GROUPS"]).GROUPS)),
              help="Only components of this kind.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def plugins(ctx, kind, as_json) -> None:
    """List installed components (fedllm plugins show NAME for one's config)."""
    if ctx.invoked_subcommand:
        return
    from rich.table import Table

    from fedllm.plugins import discover

    infos = discover(kind)
    if as_json:
        click.echo(json.dumps([{
            "kind": i.kind, "name": i.name, "distribution": i.distribution,
            "version": i.version, "status": i.status, "description": i.description,
            "entry_point": i.entry_point, "error": i.error} for i in infos], indent=2))
        return
    t = Table(title="fedllm plugins")
    for col in ("kind", "name", "distribution", "version", "status", "description"):
        t.add_column(col)
    for i in infos:
        status = "[red]broken[/]" if i.error else "[green]ok[/]"
        t.add_row(i.kind, i.name, i.distribution, i.version, status,
                  i.description if not i.error else f"[red]{i.error}[/]")
    out.print(t)


@plugins.command("show")
@click.argument("name")
@click.option("--kind", default=None, help="Disambiguate when several kinds share NAME.")
def plugins_show(name, kind) -> None:
    """Show a component's config schema: fields, types, defaults, help."""
    from rich.table import Table

    from fedllm.plugins import GROUPS, installed_names, load

    kinds = [kind] if kind else [k for k in GROUPS if name in installed_names(k)]
    if not kinds:
        every = sorted({n for k in GROUPS for n in installed_names(k)})
        raise FedLLMError(f"no installed plugin is named {name!r}; installed: {', '.join(every)}")
    for k in kinds:
        info = load(k, name)
        schema = info.plugin.Config.model_json_schema()
        t = Table(title=f"{k} {name} — {info.distribution} {info.version}",
                  caption=info.plugin.description)
        for col in ("field", "type", "default", "help"):
            t.add_column(col)
        for field, spec in _fields(schema, schema.get("properties", {})):
            t.add_row(field, _type_of(spec), json.dumps(spec.get("default")) if "default" in spec
                      else "[bold]required[/]", spec.get("description", ""))
        out.print(t)


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


# --------------------------------------------------------------------------- doctor


@main.command()
def doctor() -> None:
    """Versions of the stack and the hardware found, and what that disables."""
    from fedllm.doctor import report

    out.print(report())


def _register_subcommands() -> None:
    """Subcommands kept in their own modules (data, eval, serve ...), if present."""
    import importlib

    for mod in ("data", "evaluate", "flower"):
        try:
            m = importlib.import_module(f"fedllm.cli.{mod}")
        except ModuleNotFoundError as exc:
            if exc.name == f"fedllm.cli.{mod}":
                continue
            raise
        m.register(main)


_register_subcommands()

if __name__ == "__main__":
    main()
