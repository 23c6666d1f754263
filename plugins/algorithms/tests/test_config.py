"""Every component is installed under its entry point, with the reference defaults, and bad
values are rejected with the field, the value and what is allowed."""

from __future__ import annotations

import pytest

from fedllm.config import apply_override, resolve
from fedllm.errors import ConfigError


def config(*overrides):
    data: dict = {}
    for o in overrides:
        apply_override(data, o)
    return resolve(data)


@pytest.mark.parametrize("name,defaults", [
    ("fedavg", {}),
    ("local", {"client": 0}),
    ("fedprox", {"mu": 0.01}),
    ("scaffold", {}),
    ("fedavgm", {"beta1": 0.5, "form": "reference", "server_lr": 1.0}),
    ("fedadagrad", {"eta": 1e-3, "tau": 1e-3, "weighted": False}),
    ("fedyogi", {"eta": 1e-3, "tau": 1e-3, "beta1": 0.5, "beta2": 0.99, "form": "reference",
                 "weighted": False}),
    ("fedadam", {"eta": 1e-3, "tau": 1e-3, "beta1": 0.5, "beta2": 0.99, "form": "reference",
                 "weighted": False}),
])
def test_algorithms_are_plugins_with_reference_defaults(name, defaults):
    info, cfg = config(f"algorithm.name={name}").one("algorithm")
    assert info.distribution == "fedllm-algorithms"
    assert cfg.model_dump() == defaults
    for field in type(cfg).model_fields.values():
        assert field.description, f"{name}: every field is documented"


@pytest.mark.parametrize("override,message", [
    ("algorithm={name: fedprox, mu: -1}", "algorithm.mu: Input should be greater than or equal "
     "to 0 (got -1)"),
    ("algorithm={name: fedadam, beta2: 1.5}", "algorithm.beta2: Input should be less than 1 "
     "(got 1.5)"),
    ("algorithm={name: fedyogi, form: textbook}", "algorithm.form: Input should be 'reference' "
     "or 'paper' (got 'textbook')"),
    ("algorithm={name: scaffold, lr: 1}", "algorithm.lr: unknown key (value 1)"),
    ("sampler={name: simlang, unmapped: skip}", "sampler.unmapped: Input should be 'own', "
     "'drop' or 'error' (got 'skip')"),
    ("algorithm={name: fedavgn}", "algorithm.name: algorithm 'fedavgn' is not installed. "
     "Did you mean 'fedavg'?"),
])
def test_bad_values_name_field_value_and_allowed(override, message):
    with pytest.raises(ConfigError) as exc:
        config(override)
    assert message in str(exc.value)


def test_samplers_installed():
    for name in ("uniform", "all", "cluster", "samlang", "simlang"):
        info, _ = config(f"sampler.name={name}").one("sampler")
        assert info.name == name
    _, cfg = config("sampler.name=simlang").one("sampler")
    assert "romance" in cfg.families and cfg.key == "language"
    _, cfg = config("sampler.name=samlang").one("sampler")
    assert cfg.families is None


def test_local_picks_one_client_by_id_or_index():
    from fedllm.testing import call
    from fedllm_algorithms.local import Local, LocalConfig

    clients = ["alice", "bob", "7"]
    assert call(Local(LocalConfig(client=1)), "fedllm_sample", clients=clients) == ["bob"]
    assert call(Local(LocalConfig(client="7")), "fedllm_sample", clients=clients) == ["7"]
    with pytest.raises(ConfigError, match="algorithm.client: index 3 is out of range \\(0..2\\)"):
        call(Local(LocalConfig(client=3)), "fedllm_sample", clients=clients)
    with pytest.raises(ConfigError, match="algorithm.client: 'carol' is not a client; clients "
                       "are alice, bob, 7"):
        call(Local(LocalConfig(client="carol")), "fedllm_sample", clients=clients)
