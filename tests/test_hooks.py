"""The hook reference is the contract: every hook is documented (docs/hooks.md, generated from
core/contract.py), every documented hook exists, and every hook has a ``test_hook_<name>``
here that checks the core calls it when and with what the contract says.

Most tests read the calls a spy records in real runs of the tiny federation: the spy is a
pluggy wrapper registered beside each component, so the components run unchanged."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from fedllm import contract
from fedllm.contract import HOOKS, hookimpl
from fedllm.testing import call, component, run_quick

ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- the reference


def test_the_reference_is_generated_from_the_contract():
    assert (ROOT / "docs" / "hooks.md").read_text() == contract.reference_markdown(), (
        "docs/hooks.md is stale: run `python scripts/hooks_doc.py`")


def test_every_hook_is_documented_and_every_documented_hook_exists():
    doc = (ROOT / "docs" / "hooks.md").read_text()
    for h in HOOKS.values():
        assert f"### `{h.signature}`" in doc, f"{h.name} is not documented"
        assert h.doc, f"{h.name} has no docstring in core/contract.py"
    documented = set(re.findall(r"^### `(fedllm_\w+)\(", doc, re.M))
    assert documented == set(HOOKS), f"documented but not hooks: {documented - set(HOOKS)}"
    arch = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    for h in HOOKS.values():
        assert h.name in arch, f"{h.name} is missing from ARCHITECTURE.md's hook table"


def test_every_hook_has_a_test():
    missing = [h for h in HOOKS if f"test_hook_{h}" not in globals()]
    assert not missing, f"hooks without a test_hook_<name> here: {missing}"


# --------------------------------------------------------------------------- the spy


class Spy:
    """Records ``(hook, component, kwargs, result, model loaded?, run dir?)`` for every call."""

    def __init__(self):
        self.calls: list[dict] = []

    def of(self, hook: str, kind: str | None = None) -> list[dict]:
        return [c for c in self.calls if c["hook"] == hook and (kind is None
                                                                 or c["kind"] == kind)]


def _wrapper(spy: Spy, label: str, hook: str):
    args = [a for a in HOOKS[hook].function.__code__.co_varnames[
        1:HOOKS[hook].function.__code__.co_argcount]]
    ns: dict = {}
    exec(f"def {hook}(self, {', '.join(args)}):\n"  # noqa: S102 - a generated pass-through
         f"    before = self._before(locals())\n"
         f"    result = yield\n"
         f"    self._after({hook!r}, dict({', '.join(f'{a}={a}' for a in args)}), result, before)\n"
         f"    return result\n", ns)
    return hookimpl(wrapper=True)(ns[hook])


def _spying_build(spy: Spy, real_build):
    def build(info, config):
        comp = real_build(info, config)

        class Recorder:
            def _before(self, local):
                ctx = local.get("ctx")
                return {"model": getattr(ctx, "model", None) is not None,
                        "run_dir": getattr(ctx, "run_dir", None)}

            def _after(self, hook, kwargs, result, before):
                spy.calls.append({"hook": hook, "kind": comp.kind, "name": comp.name,
                                  "kwargs": kwargs, "result": result, **before})

        for hook in comp._hooks:
            setattr(Recorder, hook, _wrapper(spy, f"{comp.kind}:{comp.name}", hook))
        comp.pm.register(Recorder(), name=f"spy:{comp.kind}:{comp.name}")
        return comp

    return build


@pytest.fixture(scope="module")
def spied(tmp_path_factory):
    """Two spied runs: FedProx + user-level DP in per-topic cohorts (with the held-out
    evaluator), and SCAFFOLD."""
    import fedllm.context as context_module

    mp = pytest.MonkeyPatch()
    spy = Spy()
    mp.setattr(context_module, "build", _spying_build(spy, context_module.build))
    tmp = tmp_path_factory.mktemp("spy")
    try:
        a = run_quick(tmp, "algorithm.name=fedprox", "privacy.0.name=user-dp",
                      "privacy.0.sigma=0.001", "sampler.name=cluster", "sampler.key=style",
                      "eval_every=1", name="a")
        b = run_quick(tmp, "algorithm.name=scaffold", name="b")
    finally:
        mp.undo()
    return spy, a, b


# --------------------------------------------------------------------------- every kind


def test_hook_fedllm_check(spied):
    spy, a, _ = spied
    checks = spy.of("fedllm_check")
    kinds = {c["kind"] for c in checks}
    assert {"task", "privacy"} <= kinds  # sft checks max_length, user-dp its calibration
    assert all(not c["model"] and c["run_dir"] is None for c in checks)  # before both
    assert all(c["kwargs"]["ctx"].model_info is not None for c in checks)


def test_hook_fedllm_round_end(spied):
    spy, a, _ = spied
    ends = spy.of("fedllm_round_end", "privacy")
    assert [c["kwargs"]["round"] for c in ends][:2] == [0, 1]
    assert all("privacy" in rec for rec in a.history)  # what it added was written


# --------------------------------------------------------------------------- dataset, peft


def test_hook_fedllm_load_dataset(spied):
    spy, a, _ = spied
    (call_,) = [c for c in spy.of("fedllm_load_dataset") if c["kwargs"]["ctx"] is a.ctx]
    assert call_["result"] is a.ctx.dataset and not call_["model"]


def test_hook_fedllm_wrap_model(spied):
    spy, a, _ = spied
    (call_,) = [c for c in spy.of("fedllm_wrap_model") if c["kwargs"]["ctx"] is a.ctx]
    assert call_["result"] is a.ctx.model
    assert all(not p.requires_grad for p in call_["kwargs"]["model"].parameters()
               if not any(p is q for q in a.ctx.trainable.values()))


def test_hook_fedllm_config_from_adapter(tmp_path):
    from fedllm.cli.evaluate import _bare_adapter_config

    eng = run_quick(tmp_path, "rounds=1", "peft.r=4")
    cfg = _bare_adapter_config(eng.run_dir.path / "adapter")
    assert cfg["peft"]["name"] == "lora" and cfg["peft"]["r"] == 4


def _replacing(monkeypatch, kind: str, obj_factory):
    """Runs build the ``kind`` component as ``obj_factory(config)`` (a subclass recording
    its calls), everything else as usual."""
    import fedllm.context as context_module
    from fedllm.plugins import RunComponent

    real = context_module.build

    def build(info, config):
        if info.kind == kind:
            return RunComponent(info, config, obj_factory(config))
        return real(info, config)

    monkeypatch.setattr(context_module, "build", build)


def test_hook_fedllm_model_path(tmp_path, monkeypatch, fedllm_home):
    """The core loads the directory the peft component names (weights and tokenizer)."""
    from fedllm.tiny import ensure_tiny
    from fedllm_peft.lora import Lora

    small = ensure_tiny(fedllm_home / "models" / "tiny-1-block", num_hidden_layers=1)

    class Elsewhere(Lora):
        @hookimpl
        def fedllm_model_path(self, ctx):
            assert ctx.model is None and ctx.model_info.num_hidden_layers == 2
            return str(small)

    _replacing(monkeypatch, "peft", Elsewhere)
    eng = run_quick(tmp_path, "rounds=1", "evaluators=[]")
    assert eng.ctx.model.get_base_model().config.num_hidden_layers == 1
    assert eng.ctx.tokenizer.name_or_path == str(small)


def test_hook_fedllm_server_model(tmp_path, monkeypatch):
    """Every evaluation and the final save use the model the peft component gives."""
    from fedllm_peft.lora import Lora

    seen = []

    class Served(Lora):
        @hookimpl
        def fedllm_server_model(self, ctx, params):
            seen.append(params)
            ctx.set_params(params)
            return ctx.model

    _replacing(monkeypatch, "peft", Served)
    eng = run_quick(tmp_path, "rounds=2", "eval_every=1",
                    "evaluators=[{name: heldout-loss, max_samples_per_client: 1}]")
    assert len(seen) == 3  # two evaluations, then the final adapter's save
    assert all(torch.equal(seen[-1][k], v) for k, v in eng.globals["global"].items())
    assert "heldout-loss" in eng.history[0]["eval"]["global"]


# --------------------------------------------------------------------------- task


def test_hook_fedllm_encode(spied):
    spy, a, _ = spied
    splits = {c["kwargs"]["split"] for c in spy.of("fedllm_encode")
              if c["kwargs"]["ctx"] is a.ctx}
    assert splits <= {"train", "heldout"}  # once per split, or served by the on-disk cache
    assert len(a.ctx.encoded["train"]) > 0


def test_hook_fedllm_collate(spied):
    spy, a, _ = spied
    batches = [c for c in spy.of("fedllm_collate") if c["kwargs"]["ctx"] is a.ctx]
    steps = sum(c["local_steps"] for r in a.history for co in r["cohorts"].values()
                for c in co["clients"].values())
    assert len(batches) >= steps  # one per micro-batch (+ the evaluator's)
    assert all(isinstance(b["result"]["input_ids"], torch.Tensor) for b in batches)


def test_hook_fedllm_loss(spied):
    spy, a, _ = spied
    losses = [c for c in spy.of("fedllm_loss") if c["kwargs"]["ctx"] is a.ctx]
    assert losses and all(c["result"][0].dim() == 0 for c in losses)


def test_hook_fedllm_prompt(tmp_path):
    from fedllm_evaluators.generation import render_prompts

    eng = run_quick(tmp_path, "rounds=1", "task.template=vicuna")
    (text,) = render_prompts(eng.ctx, [[{"role": "user", "content": "Hi?"}]])
    assert "USER: Hi?" in text and text.endswith("ASSISTANT:")


def test_hook_fedllm_local_steps(spied):
    spy, a, _ = spied
    asked = [c for c in spy.of("fedllm_local_steps") if c["kwargs"]["ctx"] is a.ctx]
    sampled = sum(len(co["sampled"]) for r in a.history for co in r["cohorts"].values())
    assert len(asked) == sampled and all(c["result"] is None for c in asked)  # fixed steps


def test_hook_fedllm_local_update(tmp_path, monkeypatch):
    """A task that implements it replaces the core's training loop."""
    import fedllm.context as context_module
    from fedllm.messages import ClientUpdate
    from fedllm_tasks.sft import SFT

    class OwnLoop(SFT):
        @hookimpl
        def fedllm_local_update(self, ctx, instruction, data):
            params = {k: v + 1.0 for k, v in instruction.params.items()}
            return ClientUpdate(client_id=instruction.client_id, num_samples=len(data),
                                params=params, metrics={"own": 1.0})

    real = context_module.build

    def build(info, config):
        if info.kind == "task":
            from fedllm.plugins import RunComponent

            return RunComponent(info, config, OwnLoop(config))
        return real(info, config)

    monkeypatch.setattr(context_module, "build", build)
    eng = run_quick(tmp_path, "rounds=1", "evaluators=[]")
    first = eng.history[0]["cohorts"]["global"]["clients"]
    assert all(c["own"] == 1.0 and "train_loss" not in c for c in first.values())


# --------------------------------------------------------------------------- sampler


def test_hook_fedllm_cohorts(spied):
    spy, a, _ = spied
    (call_,) = [c for c in spy.of("fedllm_cohorts") if c["kwargs"]["ctx"] is a.ctx]
    assert call_["result"] == a.ctx.cohorts and len(a.ctx.cohorts) > 1
    assert set(a.history[0]["cohorts"]) == set(a.ctx.cohorts)


def test_hook_fedllm_sample(spied):
    spy, a, _ = spied
    calls = [c for c in spy.of("fedllm_sample") if c["kwargs"]["ctx"] is a.ctx]
    assert len(calls) == len(a.ctx.cohorts) * len(a.history)  # per round and cohort
    for c in calls:
        rec = a.history[c["kwargs"]["round"]]["cohorts"][c["kwargs"]["cohort"]]
        assert rec["sampled"] == c["result"]


# --------------------------------------------------------------------------- algorithm


def test_hook_fedllm_configure_client(spied):
    spy, _, b = spied
    calls = [c for c in spy.of("fedllm_configure_client") if c["kwargs"]["ctx"] is b.ctx]
    assert len(calls) == sum(len(r["cohorts"]["global"]["sampled"]) for r in b.history)
    assert all("scaffold_c" in c["kwargs"]["instruction"].extras for c in calls)


def test_hook_fedllm_aggregate(spied):
    spy, a, _ = spied
    calls = [c for c in spy.of("fedllm_aggregate") if c["kwargs"]["ctx"] is a.ctx]
    assert len(calls) == len(a.ctx.cohorts) * len(a.history)
    last = {c["kwargs"]["cohort"]: c["result"] for c in calls}
    for cohort, params in last.items():
        assert all(torch.equal(params[k], a.globals[cohort][k]) for k in params)


def test_hook_fedllm_client_begin(spied):
    spy, a, _ = spied
    calls = [c for c in spy.of("fedllm_client_begin") if c["kwargs"]["ctx"] is a.ctx]
    assert calls and all(c["kwargs"]["params"] is a.ctx.trainable for c in calls)


def test_hook_fedllm_loss_terms(spied):
    spy, a, _ = spied
    terms = [c for c in spy.of("fedllm_loss_terms") if c["kwargs"]["ctx"] is a.ctx]
    assert terms and all(c["result"].dim() == 0 for c in terms)  # FedProx's proximal term


def test_hook_fedllm_after_step(spied):
    spy, _, b = spied
    steps = [c for c in spy.of("fedllm_after_step") if c["kwargs"]["ctx"] is b.ctx]
    assert len(steps) == sum(c["local_steps"] for r in b.history
                             for c in r["cohorts"]["global"]["clients"].values())
    assert all(c["kwargs"]["lr"] == c["kwargs"]["instruction"].lr for c in steps)


def test_hook_fedllm_client_end(spied):
    spy, _, b = spied
    ends = [c for c in spy.of("fedllm_client_end") if c["kwargs"]["ctx"] is b.ctx]
    assert ends and all("scaffold_dc" in c["kwargs"]["update"].extras for c in ends)


# --------------------------------------------------------------------------- privacy


def test_hook_fedllm_privatize(spied):
    spy, a, _ = spied
    calls = [c for c in spy.of("fedllm_privatize") if c["kwargs"]["ctx"] is a.ctx]
    assert calls and all("user-dp/update_norm" in c["kwargs"]["update"].metrics for c in calls)


def test_hook_fedllm_privatize_updates(tmp_path):
    eng = run_quick(tmp_path, "privacy.0.name=dp-fedavg", "privacy.0.noise_multiplier=0.5",
                    "privacy.0.epsilon=null", "evaluators=[]")
    rec = eng.history[-1]["privacy"]["dp-fedavg"]
    assert rec["clipped_fraction"] is not None  # it saw every update of the round


def test_hook_fedllm_wrap_training(tmp_path, monkeypatch):
    """The core loop trains with the (model, optimizer) the context manager gives, for the
    client's steps only."""
    from contextlib import contextmanager

    import fedllm.engine as engine_module
    from fedllm.contract import Privacy
    from fedllm.plugins import PluginInfo, RunComponent

    seen: list[str] = []

    class CountingOptimizer:
        def __init__(self, inner):
            self.inner, self.steps = inner, 0

        def step(self):
            self.steps += 1
            return self.inner.step()

        def zero_grad(self, set_to_none=True):
            return self.inner.zero_grad(set_to_none=set_to_none)

    class Wrap(Privacy):
        @hookimpl
        def fedllm_wrap_training(self, ctx, instruction, model, optimizer):
            @contextmanager
            def cm():
                counting = CountingOptimizer(optimizer)
                seen.append("enter")
                yield model, counting
                seen.append(f"exit after {counting.steps} steps")
            return cm()

    real = engine_module.build_context

    def build_context(resolved, console=None, run_dir=None):
        ctx = real(resolved, console=console, run_dir=run_dir)
        ctx.plugins.add(RunComponent(PluginInfo("privacy", "wrap", "t", "tests", "0"), None,
                                     Wrap()))
        return ctx

    monkeypatch.setattr(engine_module, "build_context", build_context)
    run_quick(tmp_path, "rounds=1", "clients_per_round=2", "train.local_steps=3",
              "evaluators=[]")
    assert seen == ["enter", "exit after 3 steps"] * 2  # per client, around its 3 steps


# --------------------------------------------------------------------------- evaluator


def test_hook_fedllm_evaluate(spied):
    spy, a, _ = spied
    calls = [c for c in spy.of("fedllm_evaluate") if c["kwargs"]["ctx"] is a.ctx]
    assert len(calls) == len(a.ctx.cohorts) * len(a.history)  # eval_every=1, per cohort
    assert all(c["kwargs"]["model"] is a.ctx.model and not c["kwargs"]["model"].training
               for c in calls)


# --------------------------------------------------------------------------- codec


@pytest.fixture(scope="module")
def coded(tmp_path_factory):
    """A SCAFFOLD run (extras both ways) with an int8 codec that records its calls."""
    from fedllm_codecs.quantize import Int8Codec

    calls: list[tuple[str, dict]] = []

    class Recording(Int8Codec):
        @hookimpl
        def fedllm_codec_encode(self, ctx, direction, cohort, round, client_id, tensors,
                                reference):
            out = super().fedllm_codec_encode(
                ctx=ctx, direction=direction, cohort=cohort, round=round, client_id=client_id,
                tensors=tensors, reference=reference)
            calls.append(("encode", dict(direction=direction, client_id=client_id,
                                         tensors=tensors, reference=reference, out=out)))
            return out

        @hookimpl
        def fedllm_codec_decode(self, ctx, direction, cohort, round, client_id, tensors, meta,
                                reference):
            out = super().fedllm_codec_decode(
                ctx=ctx, direction=direction, cohort=cohort, round=round, client_id=client_id,
                tensors=tensors, meta=meta, reference=reference)
            calls.append(("decode", dict(direction=direction, client_id=client_id, out=out)))
            return out

    mp = pytest.MonkeyPatch()
    _replacing(mp, "codec", Recording)
    try:
        eng = run_quick(tmp_path_factory.mktemp("codec"), "algorithm.name=scaffold",
                        "codecs=[{name: int8}]", "evaluators=[]")
    finally:
        mp.undo()
    return calls, eng


def test_hook_fedllm_codec_encode(coded):
    calls, eng = coded
    enc = [c for k, c in calls if k == "encode"]
    shared = [c for c in enc if c["direction"] == "down" and c["client_id"] is None]
    assert len(shared) == eng.cfg.rounds  # the cohort's adapter: once per round, for everyone
    ups = [c for c in enc if c["direction"] == "up"]
    adapters = [c for c in ups if c["reference"] is not None]
    assert len(adapters) == eng.cfg.rounds * eng.cfg.clients_per_round
    assert all(set(c["tensors"]) == set(eng.ctx.trainable) for c in adapters)
    assert all(v.dtype in (torch.int8, torch.float32) for c in enc for v in c["out"][0].values())
    rec = eng.history[-1]
    assert rec["bytes_up"] == rec["codec"]["up"]["bytes"] < 0.3 * rec["codec"]["up"]["raw_bytes"]
    assert 0 < rec["codec"]["up"]["rel_error"] < 0.02


def test_hook_fedllm_codec_decode(coded):
    calls, eng = coded
    dec = [c for k, c in calls if k == "decode"]
    clients = [c for c in dec if c["direction"] == "down" and c["client_id"] is None]
    assert len(clients) >= eng.cfg.rounds * eng.cfg.clients_per_round  # each client decodes
    server = [c for c in dec if c["direction"] == "up"]
    assert len(server) >= eng.cfg.rounds * eng.cfg.clients_per_round
    assert all(v.dtype == torch.float32 for c in server for v in c["out"].values())


# --------------------------------------------------------------------------- judge


def test_hook_fedllm_judge_identity():
    judge = component("judge", "local-hf", model="tiny", max_new_tokens=2, device="cpu")
    ident = call(judge, "fedllm_judge_identity")
    assert ident["judge"] == "local-hf" and ident["model"] == "tiny"


def test_hook_fedllm_judge():
    from fedllm_judges.base import Grader

    judge = component("judge", "local-hf", model="tiny", max_new_tokens=2, device="cpu",
                      cache_dir=None)
    grader = Grader(judge)
    out = grader.grade([("", "Rate A"), ("", "Rate B")], prompt_version="t")
    assert len(out) == 2 and all(isinstance(o[0]["text"], str) for o in out)


# --------------------------------------------------------------------------- backend


def test_hook_fedllm_node_clients():
    """A dataset that takes its clients from the nodes asks the backend which they hold."""
    from types import SimpleNamespace

    assert call(component("backend", "in-process"), "fedllm_node_clients") is None
    nodes = component("dataset", "flower-nodes")
    backend = SimpleNamespace(call=lambda hook, **kw: {"1": ["zoe"], "2": ["amy"]})
    ds = call(nodes, "fedllm_load_dataset", ctx=SimpleNamespace(backend=backend))
    assert ds.client_ids == ["amy", "zoe"]


@pytest.fixture(scope="module")
def lifecycle(tmp_path_factory):
    """A run on an in-process backend that records when it is started and closed."""
    import fedllm.context as context_module
    from fedllm.backends import InProcess
    from fedllm.plugins import RunComponent

    seen: list[tuple[str, bool, object]] = []

    class Recording(InProcess):
        @hookimpl
        def fedllm_backend_start(self, ctx):
            seen.append(("start", ctx.model is not None, ctx.run_dir))

        @hookimpl
        def fedllm_backend_close(self, ctx):
            seen.append(("close", ctx.model is not None, ctx.run_dir))

    real = context_module.build

    def build(info, config):
        if info.kind == "backend":
            return RunComponent(info, config, Recording(config))
        return real(info, config)

    mp = pytest.MonkeyPatch()
    mp.setattr(context_module, "build", build)
    try:
        eng = run_quick(tmp_path_factory.mktemp("life"), "evaluators=[]")
    finally:
        mp.undo()
    return seen, eng


def test_hook_fedllm_backend_start(lifecycle):
    seen, eng = lifecycle
    assert seen[0] == ("start", True, eng.run_dir.path)  # after the model and the run dir


def test_hook_fedllm_run_clients(spied):
    spy, a, _ = spied
    calls = [c for c in spy.of("fedllm_run_clients") if c["kwargs"]["ctx"] is a.ctx]
    assert len(calls) == len(a.ctx.cohorts) * len(a.history)
    assert all(c["result"].dropped == [] for c in calls)


def test_hook_fedllm_backend_close(lifecycle):
    seen, eng = lifecycle
    assert [s[0] for s in seen] == ["start", "close"]  # once each, close at the very end
    assert len(eng.history) == eng.cfg.rounds


# --------------------------------------------------------------------------- command


def test_hook_fedllm_register_commands():
    from fedllm.cli.main import main

    res = CliRunner().invoke(main, ["--help"])
    assert res.exit_code == 0
    for cmd in ("data", "serve", "join", "keys", "bench", "report", "push"):  # distributions
        assert cmd in main.commands and cmd in res.output



# --------------------------------------------------------------------------- preset


def test_hook_fedllm_presets():
    """`fedllm run --preset` asks the named preset component for its presets (fedllm-bench
    ships some); the preset then resolves like any config, with --set on top."""
    from fedllm.cli.main import main
    from fedllm.presets import list_presets, preset_config

    comp = component("preset", "fedllm-bench")
    found = call(comp, "fedllm_presets")
    assert isinstance(found, dict) and found
    for name, entry in found.items():
        assert set(entry) == {"summary", "config"} and isinstance(entry["config"], dict)
        assert f"fedllm-bench/{name}" in {p.name for p in list_presets()}
    assert preset_config("fedllm-bench/ci-fedavg") == found["ci-fedavg"]["config"]
    res = CliRunner().invoke(main, ["run", "--preset", "fedllm-bench/ci-fedavg", "--dry-run",
                                    "--set", "rounds=2"])
    assert res.exit_code == 0, res.output
    assert "rounds: 2" in res.stdout
