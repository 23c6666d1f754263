"""Cluster-restricted federations: sampling and aggregation within groups of clients that share
a metadata value (FedLLM-Bench §4.2, SPEC §3).

The sampler splits the clients into cohorts by ``ctx.dataset.clients[cid][key]`` (optionally
mapped through ``families``); the engine then runs one independent federation per cohort (its
own global adapter, server state, ``adapters/<cohort>/`` and evaluation). Within a cohort the
clients are drawn with the reference uniform rule (SPEC §2), ``clients_per_round`` per cohort.
Any algorithm combines with it: ``algorithm: fedavg`` + ``sampler: samlang`` is FedSamLang,
``sampler: simlang`` is FedSimLang.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Literal

from pydantic import Field, field_validator

from fedllm import Plugin, PluginConfig, Sampler, hookimpl
from fedllm.errors import ConfigError, DataError

from .samplers import reference_sample

if TYPE_CHECKING:
    from fedllm.context import RunContext

#: FedLLM-Bench §4.2's five "similar language" groups, with the names Aya uses, plain names and
#: ISO 639-1 / 639-3 codes (matched case-insensitively). Telugu, the eighth Fed-Aya language,
#: is in no group.
LANGUAGE_FAMILIES: dict[str, list[str]] = {
    "arabic-urdu-persian": ["Standard Arabic", "Arabic", "ar", "arb", "ara", "Urdu", "ur", "urd",
                            "Iranian Persian", "Persian", "Farsi", "fa", "pes", "fas"],
    "romance": ["French", "fr", "fra", "Italian", "it", "ita", "Spanish", "es", "spa",
                "Portuguese", "pt", "por"],
    "english-german": ["English", "en", "eng", "German", "de", "deu", "ger"],
    "slavic": ["Russian", "ru", "rus", "Polish", "pl", "pol", "Ukrainian", "uk", "ukr"],
    "cjk": ["Simplified Chinese", "Traditional Chinese", "Chinese", "zh", "zho", "zh-hans",
            "zh-hant", "zh-cn", "zh-tw", "Japanese", "ja", "jpn", "Korean", "ko", "kor"],
}

_UNSAFE = re.compile(r"[^a-z0-9_.-]+")


def cohort_name(value: str) -> str:
    """A cohort name usable as a directory name (``adapters/<cohort>/``)."""
    name = _UNSAFE.sub("-", str(value).strip().lower()).strip("-.")
    return name or "unnamed"


class ClusterConfig(PluginConfig):
    key: str = Field("language", description="Client metadata field whose value picks the "
                     "cluster (e.g. 'language').")
    families: dict[str, list[str]] | None = Field(
        None, description="Map cluster name -> metadata values it groups (case-insensitive); "
        "None: one cluster per distinct value.")
    unmapped: Literal["own", "drop", "error"] = Field(
        "own", description="A value in no family: its own cluster ('own'), leave its clients "
        "out of the run ('drop'), or fail ('error').")
    seed_offset: int = Field(0, description="Added to the round index to seed each cluster's "
                             "draw; 0 reproduces the reference.")

    @field_validator("families")
    @classmethod
    def _disjoint(cls, v):
        if v is None:
            return v
        if not v:
            raise ValueError("must name at least one family (or be null for one cluster per "
                             "value)")
        seen: dict[str, str] = {}
        for fam, values in v.items():
            if not values:
                raise ValueError(f"family {fam!r} lists no values")
            for val in values:
                low = str(val).lower()
                if low in seen and seen[low] != fam:
                    raise ValueError(f"value {val!r} is in both {seen[low]!r} and {fam!r}")
                seen[low] = fam
        return v


class SimLangConfig(ClusterConfig):
    families: dict[str, list[str]] | None = Field(
        LANGUAGE_FAMILIES, description="Map cluster name -> metadata values it groups "
        "(case-insensitive). Default: FedLLM-Bench's five language families.")


class Cluster(Sampler):
    def __init__(self, config: ClusterConfig):
        self.config = config

    def clusters(self, meta: dict[str, dict]) -> dict[str, list[str]]:
        """``{cohort: [client ids]}`` in dataset order (used by the hook and by tests)."""
        c = self.config
        lookup = ({str(val).lower(): fam for fam, vals in c.families.items() for val in vals}
                  if c.families is not None else None)
        missing = [cid for cid, m in meta.items() if (m or {}).get(c.key) is None]
        if missing:
            keys = sorted({k for m in meta.values() for k in (m or {})})
            raise DataError(
                f"sampler.key: {len(missing)} client(s) have no {c.key!r} metadata "
                f"({', '.join(map(repr, missing[:5]))}{' ...' if len(missing) > 5 else ''}); "
                f"the dataset's client metadata fields are {keys or '(none)'}")
        out: dict[str, list[str]] = {}
        origin: dict[str, str] = {}
        for cid, m in meta.items():
            value = str(m[c.key])
            if lookup is None:
                label = value
            elif value.lower() in lookup:
                label = lookup[value.lower()]
            elif c.unmapped == "own":
                label = value
            elif c.unmapped == "drop":
                continue
            else:
                raise ConfigError(
                    f"sampler.families: client {cid!r} has {c.key}={value!r}, which is in no "
                    f"family; families are {', '.join(c.families or {})} (or set "
                    "sampler.unmapped to 'own' or 'drop')")
            name = cohort_name(label)
            if origin.setdefault(name, label) != label:
                raise ConfigError(f"sampler: clusters {origin[name]!r} and {label!r} both map "
                                  f"to the cohort name {name!r}; rename one in sampler.families")
            out.setdefault(name, []).append(cid)
        if not out:
            raise ConfigError(f"sampler.unmapped: 'drop' left no clients (no {c.key} value is "
                              f"in sampler.families)")
        return out

    @hookimpl
    def fedllm_cohorts(self, ctx: RunContext, clients: list[str]) -> dict[str, list[str]]:
        meta = ctx.dataset.clients
        return self.clusters({cid: meta.get(cid, {}) for cid in clients})

    @hookimpl
    def fedllm_sample(self, ctx: RunContext, cohort: str, clients: list[str],
                      round: int) -> list[str]:
        return reference_sample(clients, ctx.config.clients_per_round, round,
                                self.config.seed_offset)


cluster = Plugin(kind="sampler", name="cluster", factory=Cluster, Config=ClusterConfig,
                 description="Independent federations per client cluster keyed on a metadata "
                 "field (uniform sampling inside each).")
samlang = Plugin(kind="sampler", name="samlang", factory=Cluster, Config=ClusterConfig,
                 description="FedSamLang: one federation per client language.")
simlang = Plugin(kind="sampler", name="simlang", factory=Cluster, Config=SimLangConfig,
                 description="FedSimLang: one federation per language family (FedLLM-Bench "
                 "§4.2's five groups).")
