"""Config loading, overrides and two-phase validation."""

import math

import pytest

from fedllm.config import RunConfig, TrainConfig, apply_override, build_config, lr_at, resolve
from fedllm.errors import ConfigError


def test_override_parses_yaml_values_and_creates_paths():
    data = {}
    apply_override(data, "rounds=20")
    apply_override(data, "algorithm.name=fedavg")
    apply_override(data, "peft.target_modules=[q_proj,v_proj]")
    apply_override(data, "evaluators.0.name=heldout-loss")
    assert data == {"rounds": 20, "algorithm": {"name": "fedavg"},
                    "peft": {"target_modules": ["q_proj", "v_proj"]},
                    "evaluators": [{"name": "heldout-loss"}]}


def test_override_without_equals_is_an_error():
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        apply_override({}, "rounds")


def test_resolved_config_fills_every_default_and_versions():
    r = resolve({"peft": {"r": 8}})
    d = r.to_dict()
    assert d["peft"] == {"name": "lora", "r": 8, "alpha": 32, "dropout": 0.05,
                         "target_modules": ["q_proj", "v_proj"], "bias": "none",
                         "use_rslora": False, "layers_to_transform": None}
    assert d["algorithm"]["name"] == "fedavg"
    assert d["plugins"]["algorithm:fedavg"].startswith("fedllm-algorithms ")
    assert d["train"]["local_steps"] == RunConfig().train.local_steps


def test_every_error_is_reported_with_its_field():
    with pytest.raises(ConfigError) as e:
        resolve({"rounds": "many", "algorithm": {"name": "fedavgg"},
                 "peft": {"name": "lora", "r": -1, "colour": "red"}})
    msg = str(e.value)
    assert "rounds: Input should be a valid integer" in msg and "'many'" in msg
    # phase 2 only runs once phase 1 passes; fix rounds and look again
    with pytest.raises(ConfigError) as e:
        resolve({"algorithm": {"name": "fedavgg"}, "peft": {"name": "lora", "r": -1,
                                                             "colour": "red"}})
    msg = str(e.value)
    assert "algorithm.name:" in msg and "Did you mean 'fedavg'" in msg and "Installed" in msg
    assert "peft.r: Input should be greater than or equal to 1 (got -1)" in msg
    assert "peft.colour: unknown key" in msg


def test_unknown_core_key_is_rejected():
    with pytest.raises(ConfigError, match="roundz: unknown key"):
        resolve({"roundz": 3})


def test_backend_options_are_validated_with_the_config():
    """Before any run directory or process exists (also for --dry-run and `fedllm serve`)."""
    with pytest.raises(ConfigError, match=r"runtime.backend_options.workers: unknown key"):
        resolve(build_config(None, ["runtime.backend_options.workers=4"]))
    with pytest.raises(ConfigError, match=r"runtime.backend: backend 'nope' is not installed"):
        resolve(build_config(None, ["runtime.backend=nope"]))


def test_config_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        build_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("rounds: [1,\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        build_config(bad)
    lst = tmp_path / "list.yaml"
    lst.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        build_config(lst)


def test_cosine_schedule_matches_reference():
    t = TrainConfig(lr=2e-5, min_lr=1e-6)
    assert lr_at(t, 0, 10) == pytest.approx(2e-5)
    assert lr_at(t, 5, 10) == pytest.approx(1e-6 + 0.5 * (2e-5 - 1e-6))
    want = 1e-6 + 0.5 * (2e-5 - 1e-6) * (1 + math.cos(math.pi * 0.3))
    assert lr_at(t, 3, 10) == pytest.approx(want)
    # past its plan (an extended run), the schedule stays at min_lr instead of rising again
    assert lr_at(t, 12, 10) == pytest.approx(1e-6)
    assert RunConfig(rounds=3).planned_rounds == 3
    assert RunConfig(rounds=3, schedule_rounds=10).planned_rounds == 10
    with pytest.raises(ValueError, match="min_lr"):
        TrainConfig(lr=1e-5, min_lr=1e-4)


def test_list_overrides_extend_the_default_list():
    data = build_config(None, ["evaluators.1.name=heldout-loss", "evaluators.1.batch_size=2"])
    assert data["evaluators"] == [{"name": "heldout-loss"},
                                  {"name": "heldout-loss", "batch_size": 2}]
