"""OpenFedLLM's and FS-LLM's datasets: the generic ``hf`` component with each source's column
mapping and partitioner as defaults (every default can still be overridden with ``--set``).

OpenFedLLM splits its datasets IID; FS-LLM's Fed-Dolly has one client per task category,
Fed-CodeAlpaca one per programming language and Fed-GSM8K-3 three IID clients.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, create_model

from fedllm import Plugin

from .generic import Hf, HfConfig


def preset(name: str, description: str, **defaults: Any) -> Plugin:
    """A ``Plugin`` whose config is :class:`HfConfig` with other defaults (same descriptions)."""
    fields: dict[str, Any] = {}
    for key, value in defaults.items():
        base = HfConfig.model_fields[key]
        fields[key] = (base.annotation, Field(value, description=base.description))
    config = create_model(f"{name.title().replace('-', '')}Config", __base__=HfConfig, **fields)
    factory = type(f"{name.title().replace('-', '')}", (Hf,), {"name": name})
    return Plugin(kind="dataset", name=name, factory=factory, Config=config,
                  description=description)


_SFT = {"instruction": "instruction", "input": "input", "response": "output"}

alpaca_gpt4 = preset("alpaca-gpt4", "OpenFedLLM alpaca-gpt4 (vicgalle/alpaca-gpt4), IID.",
                     source="vicgalle/alpaca-gpt4", columns=_SFT)
fingpt_sentiment = preset("fingpt-sentiment", "OpenFedLLM FinGPT sentiment "
                          "(FinGPT/fingpt-sentiment-train), IID.",
                          source="FinGPT/fingpt-sentiment-train", columns=_SFT)
codealpaca = preset("codealpaca", "OpenFedLLM CodeAlpaca-20k (lucasmccabe-lmi/CodeAlpaca-20k), "
                    "IID.", source="lucasmccabe-lmi/CodeAlpaca-20k", columns=_SFT)
mathinstruct = preset("mathinstruct", "OpenFedLLM MathInstruct (TIGER-Lab/MathInstruct), IID.",
                      source="TIGER-Lab/MathInstruct",
                      columns={"instruction": "instruction", "response": "output"})
# The flashcards' `instruction` is one constant sentence; the question is in `input`.
medical_flashcards = preset("medical-flashcards", "OpenFedLLM medical flashcards "
                            "(medalpaca/medical_meadow_medical_flashcards), IID.",
                            source="medalpaca/medical_meadow_medical_flashcards",
                            columns={"instruction": "input", "response": "output"})
ultrafeedback = preset("ultrafeedback", "OpenFedLLM UltraFeedback binarized "
                       "(HuggingFaceH4/ultrafeedback_binarized, train_prefs), IID, DPO pairs.",
                       source="HuggingFaceH4/ultrafeedback_binarized", split="train_prefs",
                       format="preference", convert="ultrafeedback")
hh_rlhf = preset("hh-rlhf", "OpenFedLLM HH-RLHF (Anthropic/hh-rlhf), IID, DPO pairs.",
                 source="Anthropic/hh-rlhf", format="preference", convert="hh-rlhf")
fed_codealpaca = preset("fed-codealpaca", "FS-LLM Fed-CodeAlpaca: CodeAlpaca-20k, one client "
                        "per programming language.", source="lucasmccabe-lmi/CodeAlpaca-20k",
                        columns=_SFT, convert="code-language", partitioner="natural",
                        id_column="language")
fed_dolly = preset("fed-dolly", "FS-LLM Fed-Dolly: databricks-dolly-15k, one client per "
                   "category (8).", source="databricks/databricks-dolly-15k",
                   columns={"instruction": "instruction", "input": "context",
                            "response": "response"},
                   partitioner="natural", id_column="category")
fed_gsm8k_3 = preset("fed-gsm8k-3", "FS-LLM Fed-GSM8K-3: GSM8K (main), 3 IID clients.",
                     source="openai/gsm8k", subset="main", num_clients=3,
                     columns={"instruction": "question", "response": "answer"})
