"""What the contract rejects, and how mistakes surface early: a hook outside a component's
kind, a misspelt hook, a hook without @hookimpl, a wrong capability, a plugin built for another
core; suggestions for near misses; every pre-run problem reported at once; call tracing."""

from __future__ import annotations

import json
import textwrap

import pytest
from click.testing import CliRunner

from fedllm.cli.main import main
from fedllm.errors import ConfigError, PluginLoadError


def invoke(*args, **kw):
    return CliRunner().invoke(main, list(args), **kw)


def install_fake(tmp_path, monkeypatch, source: str, *, group="fedllm.algorithms",
                 name="odd", requires="fedllm>=0.2,<0.3"):
    """A distribution on sys.path whose entry point ``name`` is ``fedllm_fake:plugin``."""
    (tmp_path / "fedllm_fake.py").write_text(textwrap.dedent(source))
    dist = tmp_path / "fedllm_fake-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: fedllm-fake\nVersion: 0.1\n"
                                   + (f"Requires-Dist: {requires}\n" if requires else ""))
    (dist / "entry_points.txt").write_text(f"[{group}]\n{name} = fedllm_fake:plugin\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(__import__("sys").modules, "fedllm_fake", raising=False)
    return name


HEADER = """
from fedllm import Algorithm, Dataset, Plugin, hookimpl
"""


def listed(name):
    res = invoke("plugins", "--json")
    assert res.exit_code == 0, res.output
    return next(r for r in json.loads(res.stdout) if r["name"] == name)


def test_a_misspelt_hook_is_broken_with_a_suggestion(tmp_path, monkeypatch):
    name = install_fake(tmp_path, monkeypatch, HEADER + """
class Odd(Algorithm):
    def __init__(self, config):
        self.config = config

    @hookimpl
    def fedllm_agregate(self, updates):
        return {}

plugin = Plugin(kind="algorithm", name="odd", factory=Odd, description="typo")
""")
    row = listed(name)
    assert row["status"] == "broken"
    assert "fedllm_agregate, which is not a fedllm hook. Did you mean 'fedllm_aggregate'?" \
        in row["error"]
    with pytest.raises(ConfigError, match="algorithm.name: .*fedllm_agregate"):
        from fedllm.config import resolve

        resolve({"algorithm": {"name": name}})


def test_a_hook_of_another_kind_is_rejected_naming_component_hook_and_kind(tmp_path,
                                                                             monkeypatch):
    name = install_fake(tmp_path, monkeypatch, HEADER + """
class Odd(Dataset):
    def __init__(self, config):
        self.config = config

    @hookimpl
    def fedllm_aggregate(self, updates):
        return {}

plugin = Plugin(kind="dataset", name="odd", factory=Odd, description="wrong kind")
""", group="fedllm.datasets")
    row = listed(name)
    assert row["status"] == "broken"
    assert ("dataset 'odd' implements fedllm_aggregate, which is a algorithm hook; a dataset "
            "may implement:") in row["error"]


def test_a_hook_without_hookimpl_would_never_run_so_it_is_an_error(tmp_path, monkeypatch):
    name = install_fake(tmp_path, monkeypatch, HEADER + """
class Odd(Algorithm):
    def __init__(self, config):
        self.config = config

    def fedllm_aggregate(self, ctx, cohort, round, global_params, updates, state):
        return dict(global_params)

plugin = Plugin(kind="algorithm", name="odd", factory=Odd, description="no marker")
""")
    assert "without @hookimpl" in listed(name)["error"]


def test_a_capability_of_the_wrong_type_is_rejected_when_built(tmp_path, monkeypatch):
    name = install_fake(tmp_path, monkeypatch, HEADER + """
class Odd(Algorithm):
    aggregation_weights = "everyone"

    def __init__(self, config):
        self.config = config

plugin = Plugin(kind="algorithm", name="odd", factory=Odd, description="bad capability")
""")
    from fedllm.testing import component

    with pytest.raises(PluginLoadError, match="capability aggregation_weights = 'everyone'"):
        component("algorithm", name)


def test_a_plugin_built_for_another_core_is_flagged(tmp_path, monkeypatch):
    name = install_fake(tmp_path, monkeypatch, HEADER + """
class Odd(Algorithm):
    def __init__(self, config):
        self.config = config

plugin = Plugin(kind="algorithm", name="odd", factory=Odd, description="old")
""", requires="fedllm>=0.1,<0.2")
    row = listed(name)
    assert row["status"] == "incompatible"
    assert "built for fedllm <0.2,>=0.1; this is fedllm 0.2.0" in row["warning"]


def test_plugins_show_suggests_near_misses_and_keeps_brackets():
    res = invoke("plugins", "show", "fedavgg")
    assert res.exit_code == 2 and "Did you mean 'fedavg'?" in res.output
    assert len(res.output) < 300  # one line, not the list of every plugin
    res = invoke("plugins", "show", "fedllm-bench-json")
    assert res.exit_code == 0 and "{client_id: [samples]}" in res.output  # not a style tag
    assert invoke("plugins", "-h").exit_code == 0 and invoke("-h").exit_code == 0


def test_unknown_config_keys_suggest_the_field():
    res = invoke("run", "--dry-run", "--set", "peft.rr=8", "--set", "train.lrr=1")
    assert res.exit_code == 2
    assert "peft.rr: unknown key (value 8). Did you mean 'r'?" in res.output
    assert "train.lrr: unknown key (value 1). Did you mean 'lr'?" in res.output


def test_dry_run_reports_every_problem_before_anything_starts(tmp_path):
    res = invoke("run", "--dry-run", "--set", "dataset.name=fedllm-bench-json",
                 "--set", f"dataset.path={tmp_path / 'missing.json'}",
                 "--set", "task.max_length=4096", "--set", "runtime.device=cuda",
                 "--set", f"output_dir={tmp_path}")
    assert res.exit_code == 2
    out = " ".join(res.output.split())
    assert "dataset.path:" in out and "does not exist" in out
    assert "task.max_length: 4096 exceeds the model's context of 512 tokens" in out
    assert "runtime.device: 'cuda' but no CUDA GPU is available" in out
    assert not list(tmp_path.iterdir())  # nothing was written


def test_tracing_logs_every_call_with_its_component(tmp_path):
    res = invoke("--trace-plugins", "run", "--no-progress", "--set", "rounds=1",
                 "--set", "clients_per_round=1", "--set", "train.local_steps=1",
                 "--set", "evaluators=[]", "--set", f"output_dir={tmp_path}")
    assert res.exit_code == 0, res.output
    assert "fedllm trace → algorithm:fedavg.fedllm_aggregate(cohort='global', round=0" \
        in res.output
    assert "fedllm trace ← dataset:embedded.fedllm_load_dataset" in res.output
    from fedllm.plugins import set_tracing

    set_tracing(False)
