"""``fedllm plugins new KIND NAME [DIR]``: a complete, installable plugin package to start from.

The package has a pyproject with the entry point (hatchling: nothing is left in the source
tree by ``pip install``), a config, the kind's main hook implemented in the simplest way that
is correct, a README, and tests written with ``fedllm.testing`` that pass as generated: the
kind's contract suite and one behaviour test to grow.
"""

from __future__ import annotations

import keyword
import re
from pathlib import Path
from textwrap import dedent

from . import __version__
from .contract import GROUPS, KINDS
from .errors import ConfigError
from .paths import atomic_dir

_NAME = re.compile(r"^[a-z][a-z0-9-]*[a-z0-9]$")

#: per kind: (the component class body, imports, suite config, extra test)
_BODIES: dict[str, tuple[str, str, str, str]] = {
    "algorithm": ('''
    # the rule uses the updates only through their sample-weighted mean (secure aggregation
    # may then hide individual updates)
    aggregation_weights = "samples"
@@
    @hookimpl
    def fedllm_aggregate(self, ctx: RunContext, cohort: str, round: int, global_params: Params,
                         updates: Iterator[ClientUpdate], state: dict[str, Any]) -> Params:
        """θ_{t+1} = θ_t + step · Σ_k p_k (θ_k − θ_t), folded as updates stream in."""
        delta, _ = mean_delta(updates, global_params, weighted=True)
        return {k: global_params[k] + self.config.step * delta[k] for k in global_params}
''', "from fedllm.aggregation import mean_delta\nfrom fedllm.messages import ClientUpdate, Params",
        '    config = {"step": 0.5}\n    equals_fedavg = {"step": 1.0}\n',
        '''

def test_step_zero_keeps_the_global_adapter(run_context):
    import torch
    from fedllm.messages import ClientUpdate

    theta = run_context.get_params()
    ups = [ClientUpdate(client_id=str(i), num_samples=i + 1,
                        params={k: v + 0.1 for k, v in theta.items()}) for i in range(2)]
    new = call(component(KIND, NAME, step=0.0), "fedllm_aggregate", cohort="global", round=0,
               global_params=theta, updates=iter(ups), state={})
    assert all(torch.equal(new[k], theta[k]) for k in theta)
'''),
    "sampler": ('''
    @hookimpl
    def fedllm_sample(self, ctx: RunContext, cohort: str, clients: list[str],
                      round: int) -> list[str]:
        """Every ``every``-th client, shifted by the round: each client trains in turn."""
        k = max(1, self.config.every)
        return [c for i, c in enumerate(clients) if (i + round) % k == 0] or clients[:1]
''', "", '    config = {"every": 2}\n', '''

def test_clients_take_turns(run_context):
    clients = run_context.dataset.client_ids
    comp = component(KIND, NAME, every=2)
    a, b = (call(comp, "fedllm_sample", ctx=run_context, cohort="global", clients=clients,
                 round=r) for r in (0, 1))
    assert not set(a) & set(b) and set(a) | set(b) == set(clients)
'''),
    "evaluator": ('''
    needs_data = True  # it reads the federation's held-out split
@@
    @hookimpl
    def fedllm_evaluate(self, ctx: RunContext, model: Any, cohort: str,
                        round: int | None) -> dict[str, Any] | None:
        """How many held-out samples the cohort's clients have (replace with your metric)."""
        import json

        rows = ctx.rows.get("heldout", {})
        members = set(ctx.cohorts.get(cohort, rows))
        out = {"heldout_samples": sum(len(r) for c, r in rows.items() if c in members)}
        path = ctx.eval_path(NAME, cohort, round)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(out))
        return out
''', "", "", '''

def test_counts_the_heldout_samples(run_context):
    out = call(component(KIND, NAME), "fedllm_evaluate", ctx=run_context,
               model=run_context.model, cohort="global", round=0)
    assert out["heldout_samples"] == len(run_context.encoded["heldout"])
'''),
    "dataset": ('''
    @hookimpl
    def fedllm_load_dataset(self, ctx: RunContext) -> FederatedDataset:
        """``clients`` clients, each with ``samples`` instruction/response pairs."""
        data = {f"client-{c}": [{"instruction": f"What is {c} + {i}?",
                                 "response": f"{c} + {i} is {c + i}."}
                                for i in range(self.config.samples)]
                for c in range(self.config.clients)}
        return from_client_samples(data, heldout=1, source=NAME,
                                   fingerprint_parts=self.config.model_dump())
''', "from fedllm.data import FederatedDataset, from_client_samples", "", '''

def test_every_client_has_its_samples():
    ds = call(component(KIND, NAME, clients=3, samples=4), "fedllm_load_dataset")
    assert len(ds.clients) == 3 and len(ds.train) == 3 * 3  # one sample each is held out
'''),
}

_CONFIG_FIELDS = {
    "algorithm": '    step: float = Field(1.0, ge=0, description="Server step (1: FedAvg).")\n',
    "sampler": '    every: int = Field(2, ge=1, description="Train every n-th client, in turn.")\n',
    "evaluator": "",
    "dataset": '    clients: int = Field(4, ge=1, description="Number of clients.")\n'
               '    samples: int = Field(8, ge=2, description="Samples per client.")\n',
}

_SUITES = {"algorithm": "AlgorithmContract", "sampler": "SamplerContract",
           "evaluator": "EvaluatorContract", "dataset": "DatasetContract"}


def new_plugin(kind: str, name: str, directory: Path | None = None) -> Path:
    """Write the package for a new ``kind`` component ``name``; return its directory."""
    if kind not in _BODIES:
        raise ConfigError(f"plugins new: KIND {kind!r} has no template yet; templates exist for "
                          f"{', '.join(sorted(_BODIES))} (the contract of every kind is in "
                          "fedllm/contract.py)")
    if not _NAME.match(name):
        raise ConfigError(f"plugins new: NAME {name!r} must be lower-case letters, digits and "
                          "'-', starting with a letter (e.g. my-fedavg)")
    module = "fedllm_" + name.replace("-", "_")
    if keyword.iskeyword(module):
        raise ConfigError(f"plugins new: {name!r} gives the module name {module!r}, a keyword")
    target = Path(directory) if directory else Path.cwd() / f"fedllm-{name}"
    if target.exists() and any(target.iterdir()):
        raise ConfigError(f"plugins new: {str(target)!r} exists and is not empty; choose "
                          "another DIR")
    files = _files(kind, name, module)
    with atomic_dir(target) as tmp:
        for rel, text in files.items():
            path = tmp / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    return target


def _files(kind: str, name: str, module: str) -> dict[str, str]:
    major, minor = __version__.split(".")[:2]
    core = f"fedllm>={major}.{minor},<{major}.{int(minor) + 1}"
    cls = "".join(part.title() for part in name.split("-"))
    body, imports, suite_cfg, extra_test = _BODIES[kind]
    caps, _, body = body.rpartition("@@\n")
    article = "an" if kind[0] in "aeiou" else "a"
    base = KINDS[kind].__name__
    group = GROUPS[kind]
    pyproject = dedent(f'''\
        [build-system]
        requires = ["hatchling>=1.25"]
        build-backend = "hatchling.build"

        [project]
        name = "fedllm-{name}"
        version = "0.1.0"
        description = "A fedllm {kind} plugin: {name}."
        requires-python = ">=3.10"
        # the fedllm core versions this plugin was built for (`fedllm plugins` warns outside)
        dependencies = ["{core}"]

        [project.optional-dependencies]
        test = ["pytest>=8"]

        # one entry point per component, in its kind's group; the name is the component's name
        [project.entry-points."{group}"]
        {name} = "{module}:plugin"

        [tool.hatch.build.targets.wheel]
        packages = ["{module}"]
        # editable installs put this folder on sys.path (a .pth file, no import hooks)
        dev-mode-dirs = ["."]
        ''')
    fields = _CONFIG_FIELDS[kind] or "    pass\n"
    code = (
        f'"""The {name} {kind} (a fedllm plugin).\n\n'
        f"What {article} {kind} may implement, and what each hook gets, is in fedllm/contract.py\n"
        f"(class {base}); `fedllm plugins show {name}` shows this component's options.\n"
        '"""\n\n'
        "from __future__ import annotations\n\n"
        "from typing import TYPE_CHECKING, Any, Iterator  # noqa: F401\n\n"
        f"from fedllm import {', '.join(sorted([base, 'Plugin', 'PluginConfig']))}, hookimpl\n"
        + (f"{imports}\n" if imports else "")
        + "from pydantic import Field  # noqa: F401\n"
        + "\nif TYPE_CHECKING:\n    from fedllm.context import RunContext\n\n"
        f'NAME = "{name}"\n\n\n'
        f"class {cls}Config(PluginConfig):\n"
        f'    """The options of `{kind}: {{name: {name}, ...}}` (unknown keys are errors)."""\n\n'
        f"{fields}\n\n"
        f"class {cls}({base}):{caps.rstrip()}\n\n"
        f"    def __init__(self, config: {cls}Config):\n"
        "        self.config = config\n\n"
        f"{body.lstrip(chr(10))}\n\n"
        f'plugin = Plugin(kind="{kind}", name=NAME, factory={cls}, Config={cls}Config,\n'
        f'                description="{cls}: {article} {kind} plugin (say what it does).")\n')
    tests = dedent(f'''\
        """{name}'s tests, written with fedllm's plugin author kit (fedllm.testing)."""

        from __future__ import annotations

        from fedllm.testing import call, component  # noqa: F401
        from fedllm.testing.contracts import {_SUITES[kind]}

        KIND, NAME = "{kind}", "{name}"


        class Test{cls}({_SUITES[kind]}):
            """Every check fedllm makes of a {kind} (see fedllm/testing/contracts.py)."""

            name = NAME
        ''') + suite_cfg + extra_test
    readme = dedent(f'''\
        # fedllm-{name}

        A fedllm {kind} plugin, made with `fedllm plugins new {kind} {name}`.

        ```bash
        pip install -e .             # fedllm finds it through its entry point
        fedllm plugins show {name}   # its options
        pytest                       # the {kind} contract suite and its own tests
        ```

        Use it in a run with `--set {_section(kind)}.name={name}`. The hooks a {kind} may
        implement, their arguments and when they are called are in `fedllm/contract.py`
        (class `{base}`); publish it like any Python package (`python -m build`, `twine upload`).
        ''')
    return {"pyproject.toml": pyproject, f"{module}/__init__.py": code,
            f"tests/test_{module}.py": tests, "README.md": readme}


def _section(kind: str) -> str:
    return {"evaluator": "evaluators.0", "privacy": "privacy.0"}.get(kind, kind)
