"""``hf``: any Hugging Face dataset or local JSON / JSONL / CSV / Parquet file, mapped onto the
task's fields and split into clients by a flwr-datasets partitioner (IID, Dirichlet over a
label column, or natural id = one client per value of a column).

The OpenFedLLM / FS-LLM datasets (``presets.py``) are this component with other defaults.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Literal

from pydantic import Field, model_validator

from fedllm import Plugin, hookimpl, lazy
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

if TYPE_CHECKING:
    import datasets
else:
    datasets = lazy.module('datasets')

#: Task fields each sample format needs (``input`` is optional for SFT).
FORMATS = {"sft": ["instruction", "response"], "preference": ["prompt", "chosen", "rejected"],
           "messages": ["messages"]}
OPTIONAL = {"sft": ["input"], "preference": [], "messages": []}


if TYPE_CHECKING:
    from fedllm.context import RunContext
    from fedllm.data import FederatedDataset


class HfConfig(SourceConfig):
    format: Literal["sft", "preference", "messages"] = Field(
        "sft", description="Sample format: sft (instruction, response[, input]), preference "
        "(prompt, chosen, rejected) or messages (list of {role, content}).")
    columns: dict[str, str] = Field({}, description="Task field -> source column, e.g. "
                                    "{response: output}; unnamed fields use the same name.")
    convert: Literal["hh-rlhf", "ultrafeedback", "code-language"] | None = Field(
        None, description="A source-specific conversion run before the column mapping: hh-rlhf "
        "(split the shared Human/Assistant prefix into prompt), ultrafeedback (last assistant "
        "message of chosen/rejected), code-language (add a programming `language` column "
        "detected from the instruction).")
    partitioner: Literal["iid", "dirichlet", "natural"] = Field(
        "iid", description="How samples become clients: iid (shuffled equal shards), dirichlet "
        "(label skew over label_column with concentration alpha), natural (one client per value "
        "of id_column).")
    num_clients: int = Field(20, ge=1, description="Number of clients (iid, dirichlet).")
    alpha: float = Field(0.5, gt=0, description="Dirichlet concentration (smaller = more skewed).")
    label_column: str | None = Field(None, description="Source column the Dirichlet split is "
                                     "over (required for dirichlet).")
    id_column: str | None = Field(None, description="Source column whose values are the clients "
                                  "(required for natural).")
    min_partition_size: int = Field(10, ge=0, description="Dirichlet: resample until every client "
                                    "has at least this many samples.")
    min_samples: int = Field(1, ge=1, description="Drop clients with fewer samples than this.")
    max_samples: int | None = Field(None, ge=1, description="Use a seeded random subset of this "
                                    "many source rows (OpenFedLLM's dataset_sample); default all.")

    @model_validator(mode="after")
    def _partitioner_needs(self):
        if self.partitioner == "dirichlet" and not self.label_column:
            raise ValueError("partitioner 'dirichlet' needs label_column (the column to skew)")
        if self.partitioner == "natural" and not self.id_column:
            raise ValueError("partitioner 'natural' needs id_column (the column naming clients)")
        unknown = set(self.columns) - set(FORMATS[self.format]) - set(OPTIONAL[self.format])
        if unknown:
            allowed = FORMATS[self.format] + OPTIONAL[self.format]
            raise ValueError(f"columns: unknown task field(s) {sorted(unknown)} for format "
                             f"{self.format!r}; allowed {allowed}")
        return self


# --------------------------------------------------------------------------- conversions

_ASSISTANT = "\n\nAssistant:"


def _hh_rlhf(batch):
    """hh-rlhf stores whole transcripts; the prompt is everything up to the last assistant cue."""
    out = {"prompt": [], "chosen": [], "rejected": []}
    for ch, rj in zip(batch["chosen"], batch["rejected"]):
        cut = ch.rfind(_ASSISTANT)
        if cut < 0:
            continue
        prompt = ch[:cut + len(_ASSISTANT)]
        rcut = rj.rfind(_ASSISTANT)
        out["prompt"].append(prompt.strip())
        out["chosen"].append(ch[cut + len(_ASSISTANT):].strip())
        out["rejected"].append(rj[rcut + len(_ASSISTANT):].strip() if rcut >= 0 else rj.strip())
    return out


def _ultrafeedback(batch):
    def last(msgs):
        return next((m["content"] for m in reversed(msgs) if m["role"] == "assistant"), None)

    return {"chosen": [last(m) for m in batch["chosen"]],
            "rejected": [last(m) for m in batch["rejected"]]}


#: Checked in order; the first match names the sample's programming language.
_CODE_LANGUAGES = [
    ("JavaScript", r"\b(javascript|js|node\.?js|react|jquery)\b"),
    ("TypeScript", r"\btypescript\b"), ("Java", r"\bjava\b"), ("C++", r"(\bc\+\+|\bcpp\b)"),
    ("C#", r"(\bc#|\bc sharp\b)"), ("Python", r"\b(python|pandas|numpy|django|flask)\b"),
    ("SQL", r"\b(sql|mysql|postgres\w*)\b|\bselect\b.+\bfrom\b"), ("HTML/CSS", r"\b(html|css)\b"),
    ("Ruby", r"\bruby\b"), ("PHP", r"\bphp\b"), ("Go", r"\b(golang|go program)\b"),
    ("R", r"\bin r\b"), ("Swift", r"\bswift\b"), ("Bash", r"\b(bash|shell script)\b"),
    ("C", r"\bin c\b|\bc program"),
]


def _code_language(batch):
    langs = []
    inputs = batch.get("input") or [""] * len(batch["instruction"])
    for ins, inp in zip(batch["instruction"], inputs):
        text = f"{ins} {inp or ''}".lower()
        langs.append(next((name for name, pat in _CODE_LANGUAGES if re.search(pat, text)), "Other"))
    return {"language": langs}


CONVERSIONS = {"hh-rlhf": (_hh_rlhf, ["chosen", "rejected"], True),
               "ultrafeedback": (_ultrafeedback, ["prompt", "chosen", "rejected"], False),
               "code-language": (_code_language, ["instruction"], False)}


# --------------------------------------------------------------------------- partitioning


def _partitioner(c: HfConfig):
    from flwr_datasets.partitioner import (
        DirichletPartitioner,
        IidPartitioner,
        NaturalIdPartitioner,
    )

    if c.partitioner == "iid":
        return IidPartitioner(num_partitions=c.num_clients)
    if c.partitioner == "dirichlet":
        return DirichletPartitioner(num_partitions=c.num_clients, partition_by=c.label_column,
                                    alpha=c.alpha, min_partition_size=c.min_partition_size,
                                    self_balancing=False, shuffle=True, seed=c.seed)
    return NaturalIdPartitioner(partition_by=c.id_column)


def partition(ds: datasets.Dataset, c: HfConfig) -> datasets.Dataset:
    """Add a ``client_id`` column by the configured flwr-datasets partitioner."""
    if c.partitioner == "iid":
        if c.num_clients > len(ds):
            raise DataError(f"dataset.num_clients={c.num_clients} exceeds the {len(ds)} samples")
        ds = ds.shuffle(seed=c.seed)  # IidPartitioner takes contiguous shards
    if c.partitioner == "natural":
        ds = ds.cast_column(c.id_column, datasets.Value("string"))
    p = _partitioner(c)
    p.dataset = ds
    try:
        n = p.num_partitions
        parts = [p.load_partition(i) for i in range(n)]
    except ValueError as exc:
        raise DataError(f"dataset.partitioner={c.partitioner!r} failed: {exc}") from None
    if c.partitioner == "natural":
        names = [str(p.partition_id_to_natural_id[i]) for i in range(n)]
    else:
        width = len(str(n - 1))
        names = [f"{i:0{width}d}" for i in range(n)]
    return datasets.concatenate_datasets(
        [part.add_column(CLIENT, [name] * len(part)) for name, part in zip(names, parts)
         if len(part)])


class Hf(SourceDataset):
    name = "hf"

    def __init__(self, config: HfConfig):
        self.config = config

    def build(self):
        c = self.config
        what = f"{self.name} source {c.source!r}"
        ds = load_source(c)
        before = len(ds)
        if c.max_samples is not None and c.max_samples < len(ds):
            ds = ds.shuffle(seed=c.seed).select(range(c.max_samples))
        if c.convert:
            fn, needs, replace = CONVERSIONS[c.convert]
            require_columns(ds, needs, what)
            ds = ds.map(fn, batched=True, remove_columns=ds.column_names if replace else None)
        fields = FORMATS[c.format] + [f for f in OPTIONAL[c.format]
                                      if f in c.columns or f in ds.column_names]
        mapping = {f: c.columns.get(f, f) for f in fields}
        extra = [x for x in (c.label_column, c.id_column) if x]
        require_columns(ds, list(dict.fromkeys([*mapping.values(), *extra])), what)
        keep = {src: f for f, src in mapping.items()}
        table = ds.select_columns(list(dict.fromkeys([*mapping.values(), *extra])))
        # Copy (not rename) so that a label/id column may also be a task field.
        table = table.map(lambda b: {f"__{f}": b[src] for f, src in mapping.items()},
                          batched=True)
        table = table.remove_columns([s for s in keep if s not in extra])
        table = table.rename_columns({f"__{f}": f for f in mapping})
        table = partition(table, c)
        return finish(table, c, min_samples=c.min_samples, what=self.name, fields=fields,
                      meta_columns=[x for x in extra if x not in fields],
                      info={"task": c.format, "partitioner": c.partitioner,
                            "source_rows": before})

    @hookimpl
    def fedllm_load_dataset(self, ctx: RunContext) -> FederatedDataset:
        return cached_build(self.name, self.config, self.build)


plugin = Plugin(kind="dataset", name="hf", factory=Hf, Config=HfConfig,
                description="Any hub or local JSON/JSONL/CSV/Parquet dataset: column mapping + "
                "IID / Dirichlet / natural-id partitioner.")
