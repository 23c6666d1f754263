"""Contract suites: the checks every component of a kind must pass, for any plugin to reuse.

Subclass the suite of your kind in a test module, name your component and give its config::

    from fedllm.testing.contracts import AlgorithmContract

    class TestMyAlgorithm(AlgorithmContract):
        name = "my-algorithm"
        config = {"server_lr": 0.5}
        equals_fedavg = {"server_lr": 1.0}   # a config under which it must equal FedAvg

pytest then runs every check of the suite against it. Every suite also checks what all
components share: the entry point loads and passes the contract, its module imports nothing
heavy (``fedllm plugins`` imports it), its config renders for ``fedllm plugins show``.
Suites use the fixtures of :mod:`fedllm.testing.plugin` (the tiny model, the embedded data).
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import weakref
from typing import Any, ClassVar

import pytest

from . import call, component

#: modules a component's entry-point module must not import when it loads
HEAVY = ("torch", "transformers", "datasets", "peft", "trl", "accelerate", "flwr", "opacus",
         "bitsandbytes", "ray", "pyarrow")


def _fresh_ctx(*overrides: str, console=None):
    """A client-side RunContext of the tiny federation with ``overrides`` (model and data
    loaded), as a process of a run would have."""
    from rich.console import Console

    from ..config import apply_override, resolve
    from ..context import client_context
    from . import QUICK

    data: dict[str, Any] = {}
    for o in [*QUICK, "evaluators=[]", *overrides]:
        apply_override(data, o)
    return client_context(resolve(data), console=console or Console(stderr=True, quiet=True))


def _section(key: str, name: str, config: dict[str, Any]) -> list[str]:
    return [f"{key}={json.dumps({'name': name, **config})}"]


class ComponentContract:
    """Checks every component passes, whatever its kind.

    A suite's ``applies`` maps a check to a predicate of the suite class and the built
    component; a check that does not apply (a hook the component does not implement, a claim
    it does not make) is left out of the subclass rather than skipped."""

    kind: ClassVar[str] = ""
    name: ClassVar[str] = ""
    config: ClassVar[dict[str, Any]] = {}
    applies: ClassVar[dict[str, Any]] = {}

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        if not cls.name:
            return
        try:
            comp = component(cls.kind, cls.name, **copy.deepcopy(cls.config))
        except Exception:  # noqa: BLE001 - the suite's own checks report it
            return
        for test, predicate in cls.applies.items():
            if not predicate(cls, comp):
                setattr(cls, test, None)

    def built(self, **extra: Any):
        return component(self.kind, self.name, **{**copy.deepcopy(self.config), **extra})

    def config_fields(self) -> set[str]:
        cfg = self.built().config
        return set(type(cfg).model_fields) if cfg is not None else set()

    def test_entry_point_loads_and_keeps_to_the_contract(self):
        from ..plugins import load

        info = load(self.kind, self.name)
        assert info.plugin is not None and info.error is None
        assert info.warning is None, info.warning  # built for this fedllm core
        assert info.plugin.description, "a one-line description for `fedllm plugins`"

    def test_module_imports_nothing_heavy(self):
        from ..plugins import load

        module = load(self.kind, self.name).entry_point.split(":")[0]
        code = (f"import sys, importlib; importlib.import_module({module!r}); "
                f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             timeout=120)
        assert out.returncode == 0, out.stderr[-2000:]
        assert out.stdout.strip() == "", (
            f"importing {module} imports {out.stdout.strip()}: `fedllm plugins` and "
            "`fedllm --help` import it, so heavy imports belong inside the hooks")

    def test_config_renders_for_plugins_show(self):
        from click.testing import CliRunner

        from ..cli.main import main

        res = CliRunner().invoke(main, ["plugins", "show", self.name, "--kind", self.kind])
        assert res.exit_code == 0, res.output
        res = CliRunner().invoke(main, ["plugins", "show", self.name, "--kind", self.kind,
                                        "--json"])
        assert res.exit_code == 0, res.output
        (shown,) = json.loads(res.stdout)
        assert self.config_fields() <= set(shown["fields"])

    def test_builds_with_valid_capabilities(self):
        from ..contract import capabilities

        comp = self.built()
        for cap in capabilities(self.kind):
            comp.cap(cap)  # validated against the contract's types when built


# =========================================================================== algorithm


class _Alive:
    """Client updates handed to an aggregation, and how many were alive at once."""

    def __init__(self, updates: list):
        self.pending = list(updates)
        self.refs: list[weakref.ref] = []
        self.peak = 0
        self.consumed = 0

    def __iter__(self):
        while self.pending:
            u = self.pending.pop(0)
            self.refs.append(weakref.ref(u))
            self.peak = max(self.peak, sum(r() is not None for r in self.refs))
            self.consumed += 1
            yield u
            del u


class AlgorithmContract(ComponentContract):
    """An algorithm consumes every update, folds them as they stream in, keeps its server
    state through a checkpoint bit-exactly, and equals FedAvg where it claims to."""

    kind = "algorithm"
    #: a config under which the algorithm must equal FedAvg (None: no such claim)
    equals_fedavg: ClassVar[dict[str, Any] | None] = None
    #: updates the aggregation may hold at once (streaming: ~1 beside its running sum)
    max_alive: ClassVar[int] = 2
    clients: ClassVar[int] = 4
    rounds: ClassVar[int] = 3
    applies = {
        "test_equals_fedavg_where_it_claims_to": lambda cls, c: cls.equals_fedavg is not None,
        "test_declared_weighted_mean_stands_for_the_updates":
            lambda cls, c: c.cap("aggregation_weights") is not None,
    }

    @pytest.fixture
    def ctx(self, run_context, tmp_path):
        from ..state import ClientStateStore

        run_context.client_state = ClientStateStore(tmp_path / "client_state")
        return run_context

    def client_round(self, algo, ctx, theta, state, round: int, cohort: str = "global"):
        """Each client's update as the algorithm's client side makes it (its hooks run on
        the real adapter tensors; the 'training' is a seeded random step)."""
        import torch

        from ..messages import ClientInstruction, ClientUpdate

        clients = ctx.cohorts[cohort][: self.clients]
        out = []
        for i, cid in enumerate(clients):
            ins = ClientInstruction(cohort=cohort, round=round, client_id=cid, params=theta,
                                    lr=0.05, seed=1000 * round + i)
            call(algo, "fedllm_configure_client", ctx=ctx, cohort=cohort, round=round,
                 instruction=ins, state=state)
            params = {k: torch.nn.Parameter(v.clone()) for k, v in theta.items()}
            call(algo, "fedllm_client_begin", ctx=ctx, instruction=ins, params=params)
            g = torch.Generator().manual_seed(ins.seed)
            with torch.no_grad():
                for p in params.values():
                    p.add_(0.01 * torch.randn(p.shape, generator=g))
            call(algo, "fedllm_after_step", ctx=ctx, instruction=ins, params=params, lr=ins.lr)
            up = ClientUpdate(client_id=cid, num_samples=3 + 2 * i,
                              params={k: p.detach().clone() for k, p in params.items()})
            call(algo, "fedllm_client_end", ctx=ctx, instruction=ins, update=up)
            out.append(up)
        return out

    def aggregate(self, algo, ctx, theta, state, round, updates):
        return call(algo, "fedllm_aggregate", ctx=ctx, cohort="global", round=round,
                    global_params=theta, updates=iter(updates), state=state)

    def test_consumes_every_update_and_streams(self, ctx):
        algo = self.built()
        theta = ctx.get_params()
        ups = _Alive(self.client_round(algo, ctx, theta, {}, 0))
        n = len(ups.pending)
        new = call(algo, "fedllm_aggregate", ctx=ctx, cohort="global", round=0,
                   global_params=theta, updates=iter(ups), state={})
        assert ups.consumed == n, f"consumed {ups.consumed} of {n} updates"
        assert ups.peak <= self.max_alive, (
            f"held {ups.peak} updates at once: fold each one in as it arrives")
        assert set(new) == set(theta) and all(new[k].shape == theta[k].shape for k in theta)

    def test_does_not_mutate_the_global_adapter(self, ctx):
        algo = self.built()
        theta = ctx.get_params()
        before = {k: v.clone() for k, v in theta.items()}
        self.aggregate(algo, ctx, theta, {}, 0, self.client_round(algo, ctx, theta, {}, 0))
        import torch

        assert all(torch.equal(theta[k], before[k]) for k in theta)

    def test_server_state_survives_a_checkpoint_bit_exactly(self, ctx, tmp_path):
        import torch
        from safetensors.torch import load, save

        def rounds(algo, theta, state, start, stop):
            for r in range(start, stop):
                theta = self.aggregate(algo, ctx, theta, state, r,
                                       self.client_round(algo, ctx, theta, state, r))
            return theta, state

        theta0 = ctx.get_params()
        straight, _ = rounds(self.built(), theta0, {}, 0, self.rounds)
        from ..state import ClientStateStore

        ctx.client_state = ClientStateStore(tmp_path / "client_state-2")
        half, state = rounds(self.built(), theta0, {}, 0, 1)
        tensors = {k: v.contiguous() for k, v in state.items() if isinstance(v, torch.Tensor)}
        other = json.loads(json.dumps({k: v for k, v in state.items() if k not in tensors}))
        restored = {**(load(save(tensors)) if tensors else {}), **other}
        resumed, _ = rounds(self.built(), half, restored, 1, self.rounds)
        for k in straight:
            assert torch.equal(straight[k], resumed[k]), f"{k} differs after a resume"

    def test_equals_fedavg_where_it_claims_to(self, ctx):
        import torch

        from ..aggregation import weighted_params

        algo = self.built(**self.equals_fedavg)
        theta = ctx.get_params()
        ups = self.client_round(algo, ctx, theta, {}, 0)
        want = weighted_params(iter(ups))
        got = self.aggregate(algo, ctx, theta, {}, 0, ups)
        for k in want:
            torch.testing.assert_close(got[k], want[k], rtol=1e-5, atol=1e-7)

    def test_declared_weighted_mean_stands_for_the_updates(self, ctx):
        algo_a, algo_b = self.built(), self.built()
        weights = algo_a.cap("aggregation_weights")
        import torch

        from ..messages import ClientUpdate

        theta_a = theta_b = ctx.get_params()
        state_a: dict = {}
        state_b: dict = {}
        for r in range(self.rounds):
            ups = self.client_round(algo_a, ctx, theta_a, state_a, r)
            w = [float(u.num_samples) if weights == "samples" else 1.0 for u in ups]
            mean = {k: sum(wi * u.params[k] for wi, u in zip(w, ups)) / sum(w)
                    for k in theta_a}
            pooled = ClientUpdate(client_id="pooled", num_samples=sum(u.num_samples for u in ups),
                                  params=mean, members=[m for u in ups for m in u.clients()])
            theta_a = self.aggregate(algo_a, ctx, theta_a, state_a, r, ups)
            theta_b = self.aggregate(algo_b, ctx, theta_b, state_b, r, [pooled])
            for k in theta_a:
                torch.testing.assert_close(theta_b[k], theta_a[k], rtol=1e-5, atol=1e-6)

    def test_a_round_runs_end_to_end(self, tmp_path, tiny_federation):
        import math

        eng = tiny_federation.run(tmp_path, *_section("algorithm", self.name, self.config),
                                  "train.local_steps=1", until=1)
        rec = eng.history[0]
        assert all(math.isfinite(c["train_loss"]) for co in rec["cohorts"].values()
                   for c in co["clients"].values())


# =========================================================================== sampler


class SamplerContract(ComponentContract):
    """A sampler returns a non-empty subset of its cohort, the same one for the same round,
    and cohorts (if it forms them) that partition known clients."""

    kind = "sampler"
    applies = {"test_cohorts_partition_the_clients":
               lambda cls, c: c.implements("fedllm_cohorts")}

    def test_samples_are_deterministic_subsets(self, run_context):
        comp = self.built()
        clients = run_context.dataset.client_ids
        cohorts = call(comp, "fedllm_cohorts", ctx=run_context, clients=clients) or {
            "global": clients}
        for cohort, members in cohorts.items():
            for r in range(3):
                got = call(comp, "fedllm_sample", ctx=run_context, cohort=cohort,
                           clients=list(members), round=r)
                assert got and set(got) <= set(members)
                assert got == call(comp, "fedllm_sample", ctx=run_context, cohort=cohort,
                                   clients=list(members), round=r)

    def test_cohorts_partition_the_clients(self, run_context):
        comp = self.built()
        clients = run_context.dataset.client_ids
        cohorts = call(comp, "fedllm_cohorts", ctx=run_context, clients=clients)
        seen = [c for members in cohorts.values() for c in members]
        assert len(seen) == len(set(seen)) and set(seen) <= set(clients)


# =========================================================================== dataset


class DatasetContract(ComponentContract):
    """A dataset gives every client samples with the fields its task needs, a client index,
    and a fingerprint that identifies source + config."""

    kind = "dataset"
    task_fields: ClassVar[list[str]] = ["instruction", "response"]

    def load(self):
        from ..config import resolve
        from ..context import build_context, load_dataset

        resolved = resolve({"dataset": {"name": self.name, **copy.deepcopy(self.config)},
                            "evaluators": []})
        return load_dataset(build_context(resolved))

    def test_every_client_has_samples_with_the_task_fields(self, fedllm_home):
        from ..data import CLIENT, client_index

        ds = self.load()
        assert ds.clients, "no clients"
        rows = client_index(ds.train, ds.clients)  # raises for a client without samples
        assert all(len(r) > 0 for r in rows.values())
        for f in [CLIENT, *self.task_fields]:
            assert f in ds.train.column_names, f"train split lacks {f!r}"
        assert all(isinstance(m, dict) for m in ds.clients.values())
        if ds.heldout is not None and len(ds.heldout):
            assert set(ds.heldout.unique(CLIENT)) <= set(ds.clients)

    def test_fingerprint_is_stable(self, fedllm_home):
        assert self.load().fingerprint == self.load().fingerprint


# =========================================================================== task


class TaskContract(ComponentContract):
    """A task encodes its samples, collates batches, returns a finite loss with gradients,
    and renders prompts the way it trains."""

    kind = "task"
    #: the dataset section to train on (default: the embedded data)
    dataset: ClassVar[dict[str, Any]] = {"name": "embedded"}
    applies = {"test_prompt_is_text": lambda cls, c: c.implements("fedllm_prompt")}

    @pytest.fixture(scope="class")
    @classmethod
    def ctx(cls, fedllm_home):
        return _fresh_ctx(*_section("task", cls.name, cls.config),
                          *_section("dataset", cls.dataset["name"],
                                    {k: v for k, v in cls.dataset.items() if k != "name"}))

    def test_encode_collate_loss(self, ctx):
        import torch
        from accelerate.utils import send_to_device

        cid = ctx.dataset.client_ids[0]
        examples = ctx.client_data(cid).to_list()[:2]
        assert examples, "the task encoded no sample of the first client"
        batch = send_to_device(ctx.call("fedllm_collate", examples=examples), ctx.device)
        assert all(isinstance(v, torch.Tensor) for v in batch.values())
        ctx.model.train()
        loss, metrics = ctx.call("fedllm_loss", model=ctx.model, batch=batch)
        assert loss.dim() == 0 and torch.isfinite(loss) and loss.requires_grad
        loss.backward()
        assert any(p.grad is not None for p in ctx.trainable.values())
        ctx.model.zero_grad(set_to_none=True)

    def test_prompt_is_text(self, ctx):
        text = ctx.call("fedllm_prompt", messages=[{"role": "user", "content": "Hi?"}])
        assert isinstance(text, str) and "Hi?" in text


# =========================================================================== peft


class PeftContract(ComponentContract):
    """Exactly the trainable tensors travel, the frozen base stays frozen, and the saved
    adapter loads with ``PeftModel.from_pretrained`` (and into a freshly wrapped model, as
    ``fedllm eval`` loads it) to a model that computes the same logits."""

    kind = "peft"
    applies = {"test_rebuilds_from_its_saved_adapter_config":
               lambda cls, c: bool(c.cap("peft_types")),
               "test_a_freshly_wrapped_model_loads_the_saved_adapter":
               lambda cls, c: not c.implements("fedllm_server_model")}

    @pytest.fixture(scope="class")
    @classmethod
    def ctx(cls, fedllm_home):
        return _fresh_ctx(*_section("peft", cls.name, cls.config))

    @pytest.fixture
    def trained(self, ctx):
        """The adapter moved off its initialisation (LoRA's B = 0 would hide a failed load),
        restored afterwards."""
        import torch

        theta = ctx.get_params()
        g = torch.Generator().manual_seed(0)
        ctx.set_params({k: v + 0.05 * torch.randn(v.shape, generator=g) for k, v in theta.items()})
        ctx.model.eval()
        yield ctx
        ctx.set_params(theta)

    @staticmethod
    def _logits(model, ctx):
        import torch

        rows = ctx.encoded["train"].select(range(2))
        batch = ctx.call("fedllm_collate", examples=[rows[i] for i in range(len(rows))])
        with torch.no_grad():
            return model(input_ids=batch["input_ids"],
                         attention_mask=batch["attention_mask"]).logits

    def test_exactly_the_trainable_tensors_travel(self, ctx):
        trainable = {n for n, p in ctx.model.named_parameters() if p.requires_grad}
        assert trainable and trainable == set(ctx.trainable)
        params = ctx.get_params()
        assert set(params) == trainable
        frozen = sum(p.numel() for n, p in ctx.model.named_parameters() if not p.requires_grad)
        assert frozen > sum(v.numel() for v in params.values()), "the base must stay frozen"

    def test_saved_adapter_loads_with_peft(self, trained, tmp_path):
        import torch
        from peft import PeftModel, get_peft_model_state_dict
        from transformers import AutoModelForCausalLM

        from ..evaluation import server_model
        from ..model import resolve_path

        ctx = trained
        model = server_model(ctx, ctx.get_params())  # what the server evaluates and saves
        model.eval()
        model.save_pretrained(str(tmp_path / "adapter"))
        base = AutoModelForCausalLM.from_pretrained(resolve_path(ctx.config.model))
        loaded = PeftModel.from_pretrained(base, str(tmp_path / "adapter"))
        loaded.eval()
        ours, theirs = get_peft_model_state_dict(model), get_peft_model_state_dict(loaded)
        assert set(ours) == set(theirs)
        for k in ours:
            assert torch.equal(ours[k].cpu(), theirs[k].cpu()), f"{k} differs once loaded"
        torch.testing.assert_close(self._logits(loaded, ctx), self._logits(model, ctx))

    def test_a_freshly_wrapped_model_loads_the_saved_adapter(self, trained, tmp_path):
        """``fedllm eval`` wraps a new base with the component and loads the saved tensors."""
        import torch

        from ..cli.evaluate import load_saved_adapter
        from ..model import load_model

        ctx = trained
        ctx.model.save_pretrained(str(tmp_path / "adapter"))
        comp = ctx.plugins.one("peft")
        torch.manual_seed(1)  # a different initialisation: everything must come from the file
        fresh = comp.call("fedllm_wrap_model", ctx=ctx, model=load_model(ctx.config.model,
                                                                          ctx.device))
        load_saved_adapter(fresh, tmp_path / "adapter",
                           {n: p for n, p in fresh.named_parameters() if p.requires_grad})
        fresh.eval()
        torch.testing.assert_close(self._logits(fresh, ctx), self._logits(ctx.model, ctx))

    def test_rebuilds_from_its_saved_adapter_config(self, ctx, tmp_path):
        comp = ctx.plugins.one("peft")
        types = comp.cap("peft_types")
        ctx.model.save_pretrained(str(tmp_path / "adapter"))
        cfg = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
        assert cfg["peft_type"] in types
        section = call(comp, "fedllm_config_from_adapter", adapter_config=cfg)
        assert section and section["name"] == self.name
        component("peft", self.name, **{k: v for k, v in section.items() if k != "name"})


# =========================================================================== privacy


class PrivacyContract(ComponentContract):
    """A privacy mechanism keeps the update's tensors (names, shapes, dtypes), is
    reproducible for the same client and round, and passes its check on the tiny federation."""

    kind = "privacy"
    applies = {
        "test_privatize_keeps_tensors_and_is_reproducible":
            lambda cls, c: c.implements("fedllm_privatize"),
        "test_privatize_updates_yields_one_update_per_client":
            lambda cls, c: c.implements("fedllm_privatize_updates"),
    }

    @pytest.fixture(scope="class")
    @classmethod
    def ctx(cls, fedllm_home, tmp_path_factory):
        from ..state import ClientStateStore

        ctx = _fresh_ctx(*_section("privacy.0", cls.name, cls.config))
        ctx.client_state = ClientStateStore(tmp_path_factory.mktemp("client_state"))
        return ctx

    def test_check_passes_on_the_tiny_federation(self, ctx):
        comp = ctx.plugins.of("privacy")[0]
        assert not (call(comp, "fedllm_check", ctx=ctx) or [])

    def _client_update(self, ctx):
        import torch

        from ..messages import ClientInstruction, ClientUpdate

        theta = ctx.get_params()
        ins = ClientInstruction(cohort="global", round=0, client_id=ctx.dataset.client_ids[0],
                                params=theta, lr=0.01, seed=7)
        g = torch.Generator().manual_seed(0)
        up = ClientUpdate(client_id=ins.client_id, num_samples=5,
                          params={k: v + 0.01 * torch.randn(v.shape, generator=g)
                                  for k, v in theta.items()})
        return ins, up

    def test_privatize_keeps_tensors_and_is_reproducible(self, ctx):
        comp = ctx.plugins.of("privacy")[0]
        import torch

        outs = []
        for _ in range(2):
            ins, up = self._client_update(ctx)
            before = {k: (v.shape, v.dtype) for k, v in up.params.items()}
            call(comp, "fedllm_privatize", ctx=ctx, instruction=ins, update=up)
            assert {k: (v.shape, v.dtype) for k, v in up.params.items()} == before
            outs.append(up.params)
        assert all(torch.equal(outs[0][k], outs[1][k]) for k in outs[0])

    def test_privatize_updates_yields_one_update_per_client(self, ctx):
        comp = ctx.plugins.of("privacy")[0]
        clients = ctx.cohorts["global"][: ctx.config.clients_per_round]
        ups = [self._client_update(ctx)[1] for _ in clients]
        for u, c in zip(ups, clients):
            u.client_id = c
        out = call(comp, "fedllm_privatize_updates", ctx=ctx, cohort="global", round=0,
                   global_params=ctx.get_params(), updates=iter(ups), clients=clients)
        assert len(list(out if out is not None else ups)) == len(clients)


# =========================================================================== evaluator


class EvaluatorContract(ComponentContract):
    """An evaluator scores the model with JSON-serialisable results and writes its report
    under the run directory's ``eval/<name>/``."""

    kind = "evaluator"
    writes_report: ClassVar[bool] = True

    def test_scores_are_json_and_the_report_is_written(self, run_context, tmp_path):
        comp = self.built()
        run_context.run_dir = tmp_path
        try:
            out = call(comp, "fedllm_evaluate", ctx=run_context, model=run_context.model,
                       cohort="global", round=0)
        finally:
            run_context.run_dir = None
        json.dumps(out)
        assert out, "an evaluator reports at least one number"
        if self.writes_report:
            assert (tmp_path / "eval" / self.name / "round-1.json").is_file()


# =========================================================================== judge


class JudgeContract(ComponentContract):
    """A judge has a JSON identity and returns one text per prompt, in order."""

    kind = "judge"

    def test_identity_and_one_text_per_prompt(self, fedllm_home):
        comp = self.built()
        ident = call(comp, "fedllm_judge_identity")
        json.dumps(ident)
        assert ident == call(comp, "fedllm_judge_identity")
        texts = call(comp, "fedllm_judge", prompts=[("", "Rate: good", 0), ("", "Rate: bad", 0)])
        assert isinstance(texts, list) and len(texts) == 2 and all(isinstance(t, str)
                                                                   for t in texts)


# =========================================================================== backend


class BackendContract(ComponentContract):
    """A backend runs a round's clients to exactly the updates the in-process backend
    produces (the same results as sequential), and reports no dropped client."""

    kind = "backend"

    def test_a_round_equals_the_in_process_round(self, tmp_path, tiny_federation):
        import torch

        here = tiny_federation.run(tmp_path, name="seq", until=1)
        there = tiny_federation.run(
            tmp_path, f"runtime.backend={self.name}",
            f"runtime.backend_options={json.dumps(self.config)}", name="other", until=1)
        for k, v in here.globals["global"].items():
            assert torch.equal(there.globals["global"][k], v), f"{k} differs"
        assert not there.history[0]["cohorts"]["global"].get("dropped")


# =========================================================================== codec


class CodecContract(ComponentContract):
    """A codec's decode inverts its encode (exactly when it claims ``lossless``, within
    ``max_rel_error`` otherwise) for both directions it encodes, restoring every tensor's
    name, shape and dtype; it is deterministic; what it sends is arrays the wire formats
    carry (numpy dtypes) and JSON metadata; a run with it resumes bit-exactly."""

    kind = "codec"
    #: the largest ‖x̂ − x‖ / ‖x‖ a lossy codec may reach on a trained-looking adapter change
    max_rel_error: ClassVar[float] = 0.05

    @pytest.fixture(scope="class")
    @classmethod
    def ctx(cls, fedllm_home, tmp_path_factory):
        from ..state import ClientStateStore

        ctx = _fresh_ctx(*_section("codecs.0", cls.name, cls.config))
        ctx.client_state = ClientStateStore(tmp_path_factory.mktemp("codec-state"))
        return ctx

    def _message(self, ctx):
        import torch

        theta = ctx.get_params()
        g = torch.Generator().manual_seed(0)
        moved = {k: v + 0.01 * torch.randn(v.shape, generator=g) for k, v in theta.items()}
        return theta, moved

    def _roundtrip(self, ctx, direction, tensors, reference, client="c0", round=0):
        comp = ctx.plugins.one("codec")
        out = call(comp, "fedllm_codec_encode", ctx=ctx, direction=direction, cohort="global",
                   round=round, client_id=client, tensors=tensors, reference=reference)
        if out is None:
            return None
        enc, meta = out
        json.dumps(meta)
        for v in enc.values():
            v.numpy()  # a dtype numpy (and so every wire format) carries
        dec = call(comp, "fedllm_codec_decode", ctx=ctx, direction=direction, cohort="global",
                   round=round, client_id=client, tensors=enc, meta=meta, reference=reference)
        return enc, meta, dec

    @pytest.mark.parametrize("direction", ["down", "up"])
    def test_decode_inverts_encode(self, ctx, direction):
        import torch

        theta, moved = self._message(ctx)
        ref = theta if direction == "up" else None
        done = self._roundtrip(ctx, direction, moved, ref)
        if done is None:
            return  # it does not encode this direction
        _, _, dec = done
        assert set(dec) == set(moved)
        lossless = ctx.plugins.one("codec").cap("lossless")
        num = den = 0.0
        for k, x in moved.items():
            assert dec[k].shape == x.shape and dec[k].dtype == x.dtype, k
            if lossless:
                assert torch.equal(dec[k], x), f"{k} changed: a lossless codec must be exact"
            base = ref[k] if ref is not None else 0.0
            num += float((dec[k] - x).double().pow(2).sum())
            den += float((x - base).double().pow(2).sum())
        assert (num / den) ** 0.5 <= self.max_rel_error

    def test_is_deterministic(self, ctx):
        import torch

        theta, moved = self._message(ctx)
        for direction, ref in (("down", None), ("up", theta)):
            a = self._roundtrip(ctx, direction, moved, ref, client="d1", round=3)
            b = self._roundtrip(ctx, direction, moved, ref, client="d1", round=3)
            if a is None:
                continue
            assert a[1] == b[1] and a[0].keys() == b[0].keys()
            assert all(torch.equal(a[0][k], b[0][k]) for k in a[0])

    def test_a_run_with_it_resumes_bit_exactly(self, tmp_path):
        import torch

        from ..engine import Engine
        from . import run_quick

        codec = f"codecs={json.dumps([{'name': self.name, **self.config}])}"
        whole = run_quick(tmp_path, codec, "rounds=3", "evaluators=[]", name="whole")
        run_quick(tmp_path, codec, "rounds=3", "evaluators=[]", name="part", until=2)
        from rich.console import Console

        resumed = Engine.resume(tmp_path / "part", console=Console(stderr=True, quiet=True),
                                progress=False)
        resumed.run()
        for k, v in whole.globals["global"].items():
            assert torch.equal(resumed.globals["global"][k], v), f"{k} differs after --resume"
        assert [r["bytes_up"] for r in resumed.history] == [r["bytes_up"] for r in whole.history]


# =========================================================================== command


class CommandContract(ComponentContract):
    """A command component adds commands whose ``--help`` works."""

    kind = "command"

    def test_registers_commands_with_help(self):
        import click
        from click.testing import CliRunner

        group = click.Group("fedllm")
        call(self.built(), "fedllm_register_commands", cli=group)
        assert group.commands, "registered no command"
        for name in group.commands:
            res = CliRunner().invoke(group, [name, "--help"])
            assert res.exit_code == 0, res.output


# =========================================================================== preset


class PresetContract(ComponentContract):
    """A preset component's presets are named, summarised in one line, and each resolves as a
    run config (every section validated by its plugin, as `fedllm run --preset` does)."""

    kind = "preset"

    def test_presets_resolve(self):
        import re

        from ..config import build_config, resolve
        from ..presets import preset_config

        found = call(self.built(), "fedllm_presets")
        assert isinstance(found, dict) and found, "fedllm_presets returned no presets"
        for name, entry in found.items():
            assert re.match(r"^[a-z0-9][a-z0-9_.-]*$", name), name
            assert isinstance(entry.get("summary"), str) and entry["summary"], name
            assert "\n" not in entry["summary"], f"{name}: the summary must be one line"
            full = f"{self.name}/{name}"
            resolve(build_config(None, [], base=preset_config(full)))


__all__ = ["ComponentContract", "AlgorithmContract", "SamplerContract", "DatasetContract",
           "TaskContract", "PeftContract", "PrivacyContract", "EvaluatorContract",
           "JudgeContract", "CodecContract", "BackendContract", "CommandContract",
           "PresetContract", "HEAVY"]
