"""End-to-end runs of every algorithm on the embedded default (tiny model, 2 rounds), the
exactness properties (FedProx μ=0, SCAFFOLD round 0, resume) and a language-cluster run."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from rich.console import Console
from safetensors.torch import load_file

from tests.helpers import run_quick

ALGORITHMS = ["fedavg", "local", "fedprox", "scaffold", "fedavgm", "fedadagrad", "fedyogi",
              "fedadam"]
FAST = ["train.local_steps=2", "train.batch_size=2", "keep_checkpoints=2", "eval_every=0",
        "evaluators=[{name: heldout-loss, max_samples_per_client: 2}]"]


def adapter_tensors(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path / "adapter_model.safetensors"))


def checkpoint_globals(run: Path, round: int, cohort: str = "global") -> dict[str, torch.Tensor]:
    """The global adapter saved after round number ``round`` (counted from 1)."""
    t = load_file(str(run / "checkpoints" / f"round-{round:06d}" / "state.safetensors"))
    pre = f"cohort/{cohort}/global/"
    return {k[len(pre):]: v for k, v in t.items() if k.startswith(pre)}


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One 2-round run per algorithm, shared by the tests below."""
    tmp = tmp_path_factory.mktemp("algos")
    return {a: run_quick(tmp, f"algorithm.name={a}", *FAST, name=a) for a in ALGORITHMS}


@pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing.*:FutureWarning")
@pytest.mark.parametrize("algo", ALGORITHMS)
def test_every_algorithm_runs_end_to_end(runs, algo):
    eng = runs[algo]
    run = eng.run_dir.path
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["round"] for r in records] == [1, 2]
    assert all(math.isfinite(r["train_loss"]) for r in records)
    assert "heldout-loss" in records[-1]["eval"]["global"]
    # the saved adapter is the final global adapter, and peft loads it onto the base model
    saved = adapter_tensors(run / "adapter")
    glob = eng.globals["global"]
    assert len(saved) == len(glob)
    from peft import PeftModel

    from fedllm.model import load_model

    base = load_model(eng.cfg.model, torch.device("cpu"))
    model = PeftModel.from_pretrained(base, str(run / "adapter"))
    live = {n: p for n, p in model.named_parameters() if "lora_" in n}
    for name, value in glob.items():
        assert torch.equal(live[name], value), name
    # training moved the adapter: LoRA's B starts at zero, and round 2 changed round 1's result
    assert any(v.abs().sum() > 0 for k, v in glob.items() if "lora_B" in k)
    assert not same(glob, checkpoint_globals(run, 1))


def test_local_trains_one_client_without_aggregation(runs):
    rec = runs["local"].history
    first = runs["local"].ctx.dataset.client_ids[0]
    assert [r["cohorts"]["global"]["sampled"] for r in rec] == [[first], [first]]


def test_server_state_is_checkpointed(runs):
    for algo, keys in (("scaffold", ["c/"]), ("fedavgm", ["m/"]), ("fedadagrad", ["v/"]),
                       ("fedyogi", ["m/", "v/"]), ("fedadam", ["m/", "v/"])):
        run = runs[algo].run_dir.path
        t = load_file(str(run / "checkpoints" / "round-000001" / "state.safetensors"))
        for key in keys:
            names = [k for k in t if k.startswith(f"cohort/global/state/{key}")]
            assert len(names) == len(runs[algo].globals["global"]), (algo, key)
            assert all(t[n].dtype == torch.float32 for n in names)


def test_fedprox_mu_zero_is_fedavg_exactly(runs, tmp_path):
    eng = run_quick(tmp_path, "algorithm.name=fedprox", "algorithm.mu=0", *FAST, name="prox0")
    assert same(eng.globals["global"], runs["fedavg"].globals["global"])
    # and μ > 0 does change the result (the term is really in the loss)
    assert not same(runs["fedprox"].globals["global"], runs["fedavg"].globals["global"])


def test_scaffold_round1_is_fedavg(runs):
    sc, fa = runs["scaffold"].run_dir.path, runs["fedavg"].run_dir.path
    assert same(checkpoint_globals(sc, 1), checkpoint_globals(fa, 1))
    # from round 2 on the control variates are non-zero and change the result
    assert not same(checkpoint_globals(sc, 2), checkpoint_globals(fa, 2))
    # each sampled client's c_k is on disk, not in the plugin
    sampled = runs["scaffold"].history[0]["cohorts"]["global"]["sampled"]
    for cid in sampled:
        assert runs["scaffold"].ctx.client_state.load("global", cid) is not None
    assert not runs["scaffold"].ctx.plugins.one("algorithm").obj._clients


@pytest.mark.parametrize("algo", ["scaffold", "fedadam"])
def test_resume_is_exact(tmp_path, algo):
    from fedllm.engine import Engine

    over = [f"algorithm.name={algo}", "rounds=4", *FAST]
    whole = run_quick(tmp_path, *over, name="whole")
    part = run_quick(tmp_path, *over, name="part", until=2)
    assert len(part.history) == 2
    resumed = Engine.resume(part.run_dir.path, console=Console(stderr=True, quiet=True),
                            progress=False)
    resumed.run()
    assert [r["round"] for r in resumed.run_dir.metrics()] == [1, 2, 3, 4]
    assert same(resumed.globals["global"], whole.globals["global"])
    assert same(adapter_tensors(resumed.run_dir.path / "adapter"),
                adapter_tensors(whole.run_dir.path / "adapter"))
    assert same(resumed.states["global"], whole.states["global"])


LANG_SAMPLES = {
    "en": [("What is two plus two?", "Four."), ("Name a colour.", "Blue."),
           ("Say hello.", "Hello!"), ("What is the sky?", "Blue and wide.")],
    "de": [("Wie heisst du?", "Ich heisse Anna."), ("Was ist zwei plus zwei?", "Vier."),
           ("Sag hallo.", "Hallo!"), ("Welche Farbe hat der Himmel?", "Blau.")],
    "fr": [("Comment vas-tu ?", "Tres bien."), ("Deux plus deux ?", "Quatre."),
           ("Dis bonjour.", "Bonjour !"), ("Quelle couleur a le ciel ?", "Bleu.")],
    "es": [("Como estas?", "Muy bien."), ("Dos mas dos?", "Cuatro."),
           ("Di hola.", "Hola!"), ("De que color es el cielo?", "Azul.")],
}


@pytest.fixture
def multilingual(tmp_path):
    """A FedLLM-Bench-style release: 6 clients in 4 languages, ``language`` on each sample."""
    clients = {"u1": "English", "u2": "English", "u3": "German", "u4": "French",
               "u5": "Spanish", "u6": "French"}
    code = {"English": "en", "German": "de", "French": "fr", "Spanish": "es"}
    data = {cid: [{"instruction": i, "response": r, "language": lang}
                  for i, r in LANG_SAMPLES[code[lang]]] for cid, lang in clients.items()}
    path = tmp_path / "multi.json"
    path.write_text(json.dumps(data, ensure_ascii=False))
    return path


@pytest.mark.parametrize("sampler,cohorts", [
    ("simlang", {"english-german": ["u1", "u2", "u3"], "romance": ["u4", "u5", "u6"]}),
    ("samlang", {"english": ["u1", "u2"], "german": ["u3"], "french": ["u4", "u6"],
                 "spanish": ["u5"]}),
])
def test_cluster_run_gives_one_adapter_per_cluster(tmp_path, multilingual, sampler, cohorts):
    eng = run_quick(tmp_path, "dataset.name=fedllm-bench-json", f"dataset.path={multilingual}",
                    "dataset.heldout=1", f"sampler.name={sampler}", *FAST, name=sampler)
    run = eng.run_dir.path
    assert eng.cohorts == cohorts
    assert sorted(p.name for p in (run / "adapters").iterdir()) == sorted(cohorts)
    assert not (run / "adapter").exists()
    adapters = {c: adapter_tensors(run / "adapters" / c) for c in cohorts}
    for c in cohorts:  # peft's saved names drop the adapter name (".default")
        assert same(adapters[c], {k.replace(".default.", "."): v
                                  for k, v in eng.globals[c].items()})
    names = list(cohorts)
    assert not same(adapters[names[0]], adapters[names[1]])
    for rec in eng.history:
        for c, members in cohorts.items():
            sampled = rec["cohorts"][c]["sampled"]
            assert set(sampled) <= set(members) and len(sampled) == min(2, len(members))
    # every cluster's adapter is evaluated, on its own clients' held-out data
    final = eng.history[-1]["eval"]
    assert set(final) == set(cohorts)
    for c, members in cohorts.items():
        assert set(final[c]["heldout-loss"]["clients"]) == set(members)
