"""Cluster samplers: cohorts from client metadata (FedSamLang / FedSimLang)."""

from __future__ import annotations

import random

import pytest
from pydantic import ValidationError

from fedllm.errors import ConfigError, DataError
from fedllm_algorithms.cluster import (
    LANGUAGE_FAMILIES,
    Cluster,
    ClusterConfig,
    SimLangConfig,
    cohort_name,
)
from fedllm_algorithms.samplers import reference_sample

META = {
    "a": {"language": "English"}, "b": {"language": "German"}, "c": {"language": "French"},
    "d": {"language": "Standard Arabic"}, "e": {"language": "English"},
    "f": {"language": "Telugu"}, "g": {"language": "Simplified Chinese"},
    "h": {"language": "Japanese"}, "i": {"language": "spa"},
}


def test_samlang_one_cohort_per_language_in_dataset_order():
    got = Cluster(ClusterConfig()).clusters(META)
    assert got == {"english": ["a", "e"], "german": ["b"], "french": ["c"],
                   "standard-arabic": ["d"], "telugu": ["f"], "simplified-chinese": ["g"],
                   "japanese": ["h"], "spa": ["i"]}


def test_simlang_groups_language_families():
    got = Cluster(SimLangConfig()).clusters(META)
    assert got == {"english-german": ["a", "b", "e"], "romance": ["c", "i"],
                   "arabic-urdu-persian": ["d"], "telugu": ["f"], "cjk": ["g", "h"]}
    assert Cluster(SimLangConfig(unmapped="drop")).clusters(META).keys() == {
        "english-german", "romance", "arabic-urdu-persian", "cjk"}
    with pytest.raises(ConfigError, match="Telugu.*in no family"):
        Cluster(SimLangConfig(unmapped="error")).clusters(META)


def test_default_families_are_the_papers_five_groups():
    assert len(LANGUAGE_FAMILIES) == 5
    for names in (["Standard Arabic", "Urdu", "Iranian Persian"],
                  ["French", "Italian", "Spanish", "Portuguese"], ["English", "German"],
                  ["Russian", "Polish", "Ukrainian"],
                  ["Simplified Chinese", "Traditional Chinese", "Japanese", "Korean"]):
        fams = {f for f, vals in LANGUAGE_FAMILIES.items() for n in names if n in vals}
        assert len(fams) == 1, names


def test_custom_key_and_families():
    meta = {"x": {"region": "EU"}, "y": {"region": "us"}, "z": {"region": "eu"}}
    cfg = ClusterConfig(key="region", families={"europe": ["eu"], "america": ["US", "CA"]})
    assert Cluster(cfg).clusters(meta) == {"europe": ["x", "z"], "america": ["y"]}


def test_bad_input_names_the_field():
    with pytest.raises(DataError, match="sampler.key.*'topic'.*fields are \\['language'\\]"):
        Cluster(ClusterConfig(key="topic")).clusters(META)
    with pytest.raises(ValidationError, match="'EN' is in both 'a' and 'b'"):
        ClusterConfig(families={"a": ["en"], "b": ["EN"]})
    with pytest.raises(ConfigError, match="both map to the cohort name 'a-b'"):
        Cluster(ClusterConfig(key="k")).clusters({"p": {"k": "a b"}, "q": {"k": "a/b"}})


def test_cohort_names_are_directory_safe():
    assert cohort_name("Standard Arabic") == "standard-arabic"
    assert cohort_name("../x") == "x"


def test_sampling_inside_a_cohort_is_the_reference_rule():
    clients = [f"c{i}" for i in range(10)]
    random.seed(3)
    want = [clients[i] for i in sorted(random.sample(range(10), 4))]
    assert reference_sample(clients, 4, 3) == want
    assert reference_sample(clients[:3], 4, 3) == clients[:3]
