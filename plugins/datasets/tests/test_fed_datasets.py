"""The dataset plugins on fixtures in the raw Hugging Face layouts (see fixtures/make_fixtures.py
for which clients sit just under which threshold)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fedllm.config import resolve
from fedllm.errors import ConfigError, DataError
from fedllm.plugins import build as build_component
from fedllm.testing import call

FIX = Path(__file__).parent / "fixtures"
ARENA = str(FIX / "arena.jsonl")


def build(name: str, **cfg):
    """Resolve ``dataset: {name, **cfg}`` like a run and call the dataset hook."""
    resolved = resolve({"dataset": {"name": name, **cfg}})
    info, config = resolved.one("dataset")
    return call(build_component(info, config), "fedllm_load_dataset")


def rows(ds):
    out = ds.train.to_list() + (ds.heldout.to_list() if ds.heldout is not None else [])
    return sorted(out, key=lambda r: (r["client_id"], str(r)))


def per_client(ds):
    counts = {}
    for r in rows(ds):
        counts[r["client_id"]] = counts.get(r["client_id"], 0) + 1
    return counts


# --------------------------------------------------------------------------- Fed-Aya


def test_aya_keeps_annotators_over_threshold_in_the_paper_languages():
    ds = build("fed-aya", source=str(FIX / "aya"), min_samples=5)
    # u-spa (4) is just under; u-deu is German only; u-mix has only 3 English samples.
    assert [c[:5] for c in ds.clients] == ["u-eng", "u-fra"]
    assert sorted(per_client(ds).values()) == [5, 6]
    meta = {c[:5]: m for c, m in ds.clients.items()}
    assert meta["u-eng"]["language_code"] == "eng" and meta["u-fra"]["language"] == "French"
    assert set(ds.train.column_names) == {"client_id", "instruction", "response"}
    # every client has held-out samples and keeps training samples
    assert set(ds.heldout["client_id"]) == set(ds.train["client_id"]) == set(ds.clients)


def test_aya_language_aliases_and_threshold():
    ds = build("fed-aya", source=str(FIX / "aya"), min_samples=4, languages=["en", "es"])
    assert sorted(c[:5] for c in ds.clients) == ["u-eng", "u-spa"]
    ds = build("fed-aya", source=str(FIX / "aya"), min_samples=3, languages=["en", "de"])
    # u-mix now counts its English and German samples
    assert per_client(ds)[next(c for c in ds.clients if c.startswith("u-mix"))] == 6


def test_aya_unknown_language_code_is_rejected():
    with pytest.raises(ConfigError, match=r"dataset\.languages.*'xx'"):
        resolve({"dataset": {"name": "fed-aya", "languages": ["en", "xx"]}})


def test_filter_leaving_no_client_reports_counts():
    with pytest.raises(DataError, match=r"min_samples=100 leaves no client: 4 clients with "
                       r"18 samples before .*0 after"):
        build("fed-aya", source=str(FIX / "aya"), cache=False)  # paper default 100


def test_missing_column_names_it_and_the_found_columns():
    with pytest.raises(DataError, match=r"missing required column\(s\) \['inputs', 'targets', "
                       r"'language_code', 'user_id'\]; found columns \['instruction', 'context'"):
        build("fed-aya", source=str(FIX / "dolly.jsonl"))


# --------------------------------------------------------------------------- Chatbot Arena


def test_chatbotit_takes_preferred_response_of_decisive_votes():
    ds = build("fed-chatbotit", source=ARENA, min_samples=3)
    # arena_user_two has only 2 decisive votes (3 ties): just under the threshold
    assert list(ds.clients) == ["arena_user_four", "arena_user_three"]
    assert per_client(ds) == {"arena_user_four": 4, "arena_user_three": 3}
    for r in rows(ds):
        assert "PREFERRED" in r["response"] and "turn" not in r["response"]  # first exchange
        assert r["instruction"].startswith("Prompt ")
    assert list(build("fed-chatbotit", source=ARENA, min_samples=4).clients) == ["arena_user_four"]


def test_chatbotpa_orients_chosen_and_rejected_by_the_vote():
    ds = build("fed-chatbotpa", source=ARENA, min_samples=3, heldout=0)
    assert ds.heldout is None and len(ds.train) == 7
    for r in rows(ds):
        assert "PREFERRED" in r["chosen"] and "OTHER" in r["rejected"]
        assert "tie" not in r["chosen"]
    # both sides of a model_b win are swapped relative to model_a wins
    sides = {r["chosen"][:1] for r in rows(ds)}
    assert sides == {"A", "B"}
    with pytest.raises(DataError, match="min_samples=5 leaves no client"):
        build("fed-chatbotpa", source=ARENA)  # paper default 5 > 4 pairs


# --------------------------------------------------------------------------- WildChat


def test_wildchat_single_turn_uses_first_exchange():
    ds = build("fed-wildchat", source=str(FIX / "wildchat"), min_samples=4)
    assert [c[:4] for c in ds.clients] == ["ip-a", "ip-b"]  # ip-c has 3 conversations
    assert sorted(per_client(ds).values()) == [4, 5]
    for r in rows(ds):
        assert r["instruction"].startswith("user turn 1 ")
        assert r["response"].startswith("assistant turn 1 ")
    assert next(iter(ds.clients.values()))["country"] == "United States"


def test_wildchat_multi_turn_keeps_whole_conversations():
    ds = build("fed-wildchat", source=str(FIX / "wildchat"), min_samples=3, multi_turn=True)
    assert [c[:4] for c in ds.clients] == ["ip-a", "ip-c"]  # ip-b is single-turn only
    assert ds.train.column_names == ["client_id", "messages"]
    for r in rows(ds):
        assert [m["role"] for m in r["messages"]] == ["user", "assistant"] * 2
    ds = build("fed-wildchat", source=str(FIX / "wildchat"), min_samples=5, multi_turn=True,
               min_turns=1)
    assert [c[:4] for c in ds.clients] == ["ip-a"]


# --------------------------------------------------------------------------- cache, determinism


def test_built_dataset_is_cached_memory_mapped_and_deterministic(tmp_path, monkeypatch):
    monkeypatch.setenv("FEDLLM_HOME", str(tmp_path))
    a = build("fed-chatbotit", source=ARENA, min_samples=3, heldout=1)
    b = build("fed-chatbotit", source=ARENA, min_samples=3, heldout=1)
    assert a.info["cached"] is False and b.info["cached"] is True
    assert a.fingerprint == b.fingerprint and rows(a) == rows(b)
    assert b.train.cache_files and str(tmp_path / "datasets") in b.train.cache_files[0]["filename"]
    assert len(list((tmp_path / "datasets").glob("fed-chatbotit-*"))) == 1
    nocache = build("fed-chatbotit", source=ARENA, min_samples=3, heldout=1, cache=False)
    assert rows(nocache) == rows(a) and nocache.heldout.to_list() == a.heldout.to_list()
    other = build("fed-chatbotit", source=ARENA, min_samples=3, heldout=1, seed=7)
    assert other.fingerprint != a.fingerprint
    assert len(list((tmp_path / "datasets").glob("fed-chatbotit-*"))) == 2


# --------------------------------------------------------------------------- generic + presets


def test_generic_csv_iid_with_column_mapping():
    ds = build("hf", source=str(FIX / "labelled.csv"), num_clients=4, heldout=0,
               columns={"instruction": "question", "response": "answer"})
    assert list(ds.clients) == ["0", "1", "2", "3"]
    assert sorted(per_client(ds).values()) == [15, 15, 15, 15]
    assert sorted(r["instruction"] for r in rows(ds)) == sorted(f"q{i}" for i in range(60))
    again = build("hf", source=str(FIX / "labelled.csv"), num_clients=4, heldout=0, cache=False,
                  columns={"instruction": "question", "response": "answer"})
    assert rows(again) == rows(ds)


def _dominant_share(ds) -> float:
    """Mean over clients of the share of their most common topic (q{i} has topic i % 3)."""
    shares = []
    for cid in ds.clients:
        topics = [int(r["instruction"][1:]) % 3 for r in rows(ds) if r["client_id"] == cid]
        shares.append(max(topics.count(t) for t in range(3)) / len(topics))
    return sum(shares) / len(shares)


@pytest.mark.filterwarnings("ignore:The specified min_partition_size")
def test_generic_dirichlet_skews_labels_by_alpha():
    common = dict(source=str(FIX / "labelled.csv"), partitioner="dirichlet", label_column="topic",
                  num_clients=3, min_partition_size=2, heldout=0,
                  columns={"instruction": "question", "response": "answer"})
    skewed, even = build("hf", alpha=0.1, **common), build("hf", alpha=100.0, **common)
    for ds in (skewed, even):
        assert sum(per_client(ds).values()) == 60 and len(ds.clients) == 3
    assert _dominant_share(skewed) > 0.6 > 0.45 > _dominant_share(even)


def test_generic_errors_name_the_field(tmp_path):
    with pytest.raises(ConfigError, match="needs label_column"):
        resolve({"dataset": {"name": "hf", "source": "x.csv", "partitioner": "dirichlet"}})
    with pytest.raises(DataError, match=r"missing required column\(s\) \['instruction', "
                       r"'response'\]; found columns \['question', 'answer', 'topic'\]"):
        build("hf", source=str(FIX / "labelled.csv"))
    bad = tmp_path / "data.yaml"
    bad.write_text("a: 1\n")
    with pytest.raises(ConfigError, match=r"dataset\.source: .*data\.yaml' has extension '\.yaml'"):
        build("hf", source=str(bad))


def test_fed_dolly_one_client_per_category_with_context_as_input():
    ds = build("fed-dolly", source=str(FIX / "dolly.jsonl"))
    assert per_client(ds) == {"classification": 3, "open_qa": 4, "summarization": 2}
    assert ds.clients["open_qa"]["category"] == "open_qa"
    summ = [r for r in rows(ds) if r["client_id"] == "summarization"]
    assert all(r["input"].startswith("context ") for r in summ)


def test_hh_rlhf_splits_shared_prefix_into_prompt():
    ds = build("hh-rlhf", source=str(FIX / "hh_rlhf.jsonl"), num_clients=3)
    rs = rows(ds)
    assert len(rs) == 12 and len(ds.clients) == 3
    for r in rs:
        assert r["prompt"].startswith("Human: question") and r["prompt"].endswith("Assistant:")
        assert r["chosen"].startswith("helpful") and r["rejected"].startswith("harmful")
    assert sum("clarifying" in r["prompt"] for r in rs) == 4  # multi-exchange prefixes kept


def test_ultrafeedback_reads_its_train_prefs_split():
    ds = build("ultrafeedback", source=str(FIX / "ultrafeedback"), num_clients=2)
    for r in rows(ds):
        assert r["chosen"].startswith("good") and r["rejected"].startswith("bad")
        assert r["prompt"].startswith("ultra prompt")


def test_fed_gsm8k_3_reads_the_main_subset_into_three_iid_clients():
    ds = build("fed-gsm8k-3", source=str(FIX / "gsm8k"))
    assert list(ds.clients) == ["0", "1", "2"] and sorted(per_client(ds).values()) == [4, 4, 4]
    assert all("####" in r["response"] for r in rows(ds))


# --------------------------------------------------------------------------- official release


def test_official_release_json_loads_sft_dpo_and_multi_turn(tmp_path):
    import json

    blobs = {
        "aya.json": {"u1": [{"instruction": "q", "response": "a", "language": "French"}] * 3,
                     "u2": [{"instruction": "q2", "response": "a2", "language": "Telugu"}] * 2},
        "pa.json": {"j1": [{"prompt": "p", "chosen": "good", "rejected": "bad"}] * 2},
        "mt.json": {"ip": [{"conversations": [{"role": "user", "content": "hi"},
                                              {"role": "assistant", "content": "yo"}]}] * 2},
    }
    for name, blob in blobs.items():
        (tmp_path / name).write_text(json.dumps(blob))
    aya = build("fedllm-bench-json", path=str(tmp_path / "aya.json"), heldout=1)
    assert aya.clients == {"u1": {"language": "French"}, "u2": {"language": "Telugu"}}
    assert len(aya.train) == 3 and len(aya.heldout) == 2
    pa = build("fedllm-bench-json", path=str(tmp_path / "pa.json"))
    assert pa.train[0]["chosen"] == "good" and pa.train[0]["rejected"] == "bad"
    mt = build("fedllm-bench-json", path=str(tmp_path / "mt.json"),
               columns={"conversations": "messages"})
    assert mt.train[0]["messages"][1] == {"role": "assistant", "content": "yo"}


def test_fed_codealpaca_one_client_per_programming_language():
    ds = build("fed-codealpaca", source=str(FIX / "codealpaca.jsonl"), heldout=0)
    assert per_client(ds) == {"Java": 3, "JavaScript": 3, "Other": 3, "Python": 3, "SQL": 3}
    py = [r for r in rows(ds) if r["client_id"] == "Python"]
    assert all("def rev" in r["response"] for r in py)
    sql = [r for r in rows(ds) if r["client_id"] == "SQL"]
    assert all(r["input"] == "Table: users" for r in sql)
