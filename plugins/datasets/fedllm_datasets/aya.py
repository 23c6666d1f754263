"""Fed-Aya (FedLLM-Bench): Aya's human-written instructions, one client per annotator.

Rules of the paper: 8 languages, annotators (``user_id``) with >= 100 samples. Each client's
metadata carries its language (the annotator's most frequent one).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field, field_validator

from fedllm import Plugin, hookimpl
from fedllm.data import CLIENT
from fedllm.errors import DataError

from .common import (
    SourceConfig,
    SourceDataset,
    cached_build,
    finish,
    load_source,
    require_columns,
)

#: ISO 639-1 aliases -> Aya's ``language_code`` (ISO 639-3) for the paper's and common languages.
ALIASES = {"en": "eng", "es": "spa", "fr": "fra", "ru": "rus", "pt": "por", "zh": "zho",
           "ar": "arb", "te": "tel", "de": "deu", "it": "ita", "ja": "jpn", "ko": "kor",
           "hi": "hin", "bn": "ben", "ur": "urd", "id": "ind", "tr": "tur", "vi": "vie",
           "nl": "nld", "sv": "swe", "fi": "fin", "pl": "pol", "uk": "ukr", "el": "ell",
           "fa": "pes", "ta": "tam", "ml": "mal", "mr": "mar", "gu": "guj", "kn": "kan",
           "pa": "pan", "ne": "npi", "si": "sin", "sw": "swh", "am": "amh", "ha": "hau",
           "yo": "yor", "ig": "ibo", "zu": "zul", "so": "som", "ms": "zsm", "tl": "tgl",
           "ky": "kir", "lt": "lit", "mg": "plt", "ny": "nya", "sn": "sna", "wo": "wol",
           "ga": "gle", "sd": "snd"}
#: Aya's ISO 639-3 codes (the ones above plus its Arabic varieties and other languages).
CODES = set(ALIASES.values()) | {"ary", "ars", "acq", "arz", "ajp", "apc", "aeb", "ayl",
                                 "kin", "xho", "nso", "tsn", "mlg", "ceb", "jav", "sun", "mad",
                                 "zho", "nyn", "emk", "bam", "lug", "twi", "ewe", "fon", "dyu",
                                 "tir", "orm"}
PAPER_LANGUAGES = ["eng", "spa", "fra", "rus", "por", "zho", "arb", "tel"]


if TYPE_CHECKING:
    from fedllm.context import RunContext
    from fedllm.data import FederatedDataset


class AyaConfig(SourceConfig):
    source: str = Field("CohereLabs/aya_dataset", description="Aya dataset hub id (formerly "
                        "CohereForAI/aya_dataset) or a local copy with its columns.")
    languages: list[str] = Field(PAPER_LANGUAGES, description="Language codes to keep (Aya's "
                                 "ISO 639-3 `language_code`, or ISO 639-1 aliases such as 'en'); "
                                 "default the paper's 8.")
    min_samples: int = Field(100, ge=1, description="Keep annotators with at least this many "
                             "samples (in the kept languages).")

    @field_validator("languages")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("must name at least one language code")
        out: list = []
        bad: list = []
        for code in v:
            code3 = ALIASES.get(code.lower(), code.lower())
            (out if code3 in CODES else bad).append(code3)
        if bad:
            raise ValueError(f"unknown language code(s) {bad}; use ISO 639-3 codes as in Aya's "
                             f"language_code (e.g. {', '.join(PAPER_LANGUAGES)}) or ISO 639-1 "
                             f"aliases ({', '.join(sorted(ALIASES)[:10])}, ...)")
        return sorted(set(out), key=out.index)


class FedAya(SourceDataset):
    def __init__(self, config: AyaConfig):
        self.config = config

    def build(self):
        c = self.config
        ds = load_source(c)
        require_columns(ds, ["inputs", "targets", "language_code", "user_id"],
                        f"fed-aya source {c.source!r}")
        found = set(ds.unique("language_code"))
        absent = [x for x in c.languages if x not in found]
        if len(absent) == len(c.languages):
            raise DataError(f"fed-aya: dataset.languages {c.languages} matches no sample; the "
                            f"source's language codes are {sorted(found)}")
        keep = set(c.languages)
        ds = ds.filter(lambda code: code in keep, input_columns="language_code")
        cols = {"inputs": "instruction", "targets": "response", "user_id": CLIENT}
        if "language" not in ds.column_names:
            ds = ds.add_column("language", ds["language_code"])
        ds = ds.rename_columns(cols)
        return finish(ds, c, min_samples=c.min_samples, what="fed-aya",
                      fields=["instruction", "response"],
                      meta_columns=["language", "language_code"],
                      info={"task": "sft", "languages_absent": absent})

    @hookimpl
    def fedllm_load_dataset(self, ctx: RunContext) -> FederatedDataset:
        return cached_build("fed-aya", self.config, self.build)


plugin = Plugin(kind="dataset", name="fed-aya", factory=FedAya, Config=AyaConfig,
                description="FedLLM-Bench Fed-Aya: Aya annotators as clients (8 languages, "
                ">= 100 samples each).")
