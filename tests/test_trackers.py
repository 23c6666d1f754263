"""runtime.trackers: experiment trackers through accelerate's tracker API. TensorBoard works
offline, so it is tested by reading its event files back; nothing is logged by default."""

from __future__ import annotations

import json

import pytest

from fedllm.config import resolve
from fedllm.context import build_context, prepare
from fedllm.errors import ConfigError
from fedllm.testing import quick_overrides, run_quick
from fedllm.trackers import flatten


def test_tensorboard_event_files_hold_every_round(fedllm_home, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    eng = run_quick(tmp_path, "rounds=3", "eval_every=1", "runtime.trackers=[tensorboard]")
    logdir = eng.run_dir.path / "trackers" / eng.run_dir.path.name
    events = list(logdir.glob("events.out.tfevents.*"))
    assert events, f"no event file under {logdir}"
    acc = EventAccumulator(str(logdir))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"train_loss", "lr", "bytes_down", "bytes_up", "wall_s",
            "eval/global/heldout-loss/loss"} <= tags, tags
    records = [json.loads(line) for line in
               (eng.run_dir.path / "metrics.jsonl").read_text().splitlines()]
    logged = {e.step: e.value for e in acc.Scalars("train_loss")}
    assert logged == pytest.approx({r["round"]: r["train_loss"] for r in records}, rel=1e-6)
    heldout = [e.value for e in acc.Scalars("eval/global/heldout-loss/loss")]
    assert heldout == pytest.approx([r["eval"]["global"]["heldout-loss"]["loss"]
                                     for r in records], rel=1e-6)
    # the resolved config went in as the run's hyper-parameters
    assert (logdir / "hparams.yml").is_file() or acc.Tags().get("tensors") is not None


def test_no_trackers_by_default(fedllm_home, tmp_path):
    eng = run_quick(tmp_path, "rounds=1")
    assert eng.cfg.runtime.trackers == []
    assert not (eng.run_dir.path / "trackers").exists()


def test_unknown_or_missing_tracker_is_reported_before_the_run(fedllm_home):
    from fedllm.config import apply_override

    data: dict = {}
    for o in quick_overrides("runtime.trackers=[tensorbord]"):
        apply_override(data, o)
    with pytest.raises(ConfigError) as err:
        prepare(build_context(resolve(data)), load_data=False)
    assert "runtime.trackers: 'tensorbord' is not a tracker accelerate supports" in str(err.value)
    assert "tensorboard" in str(err.value)


def test_flatten_keeps_scalars_and_drops_per_client_detail():
    rec = {"round": 2, "lr": 0.1, "train_loss": 1.5, "cohorts": {"global": {"sampled": ["a"]}},
           "eval": {"global": {"heldout-loss": {"loss": 2.0, "clients": {"a": 1.0}}}},
           "privacy": {"user-dp": {"epsilon": 0.5, "sigma": 0.1}}, "note": "x"}
    assert flatten(rec) == {"round": 2, "lr": 0.1, "train_loss": 1.5,
                            "eval/global/heldout-loss/loss": 2.0,
                            "privacy/user-dp/epsilon": 0.5, "privacy/user-dp/sigma": 0.1}
