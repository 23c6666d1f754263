"""A model directory that ships only a sentencepiece ``tokenizer.model`` (no tokenizer.json), as
many Llama-family repositories do, loads and trains: the dependency set (sentencepiece with a
protobuf flwr allows) is fixed, not the user's model."""

from __future__ import annotations

import json
import random

import pytest

from fedllm.testing import run_quick

WORDS = ("the quick brown fox jumps over lazy dog federated learning language model adapter "
         "client server round train data private update aggregate privacy gradient token "
         "capital of france is paris germany berlin numbers one two three four five hello "
         "world how are you today fine thank you question answer instruction response").split()


@pytest.fixture(scope="module")
def spm_model(tmp_path_factory):
    """A Llama directory built offline: a trained sentencepiece BPE model, a tokenizer config
    naming LlamaTokenizer, and a small random Llama of the same vocabulary."""
    import sentencepiece as spm

    from fedllm.tiny import build_model

    root = tmp_path_factory.mktemp("spm")
    rng = random.Random(0)
    corpus = root / "corpus.txt"
    corpus.write_text("\n".join(" ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 15)))
                                for _ in range(400)))
    model_dir = root / "llama-spm"
    model_dir.mkdir()
    spm.SentencePieceTrainer.train(
        input=str(corpus), model_prefix=str(model_dir / "tokenizer"), vocab_size=300,
        model_type="bpe", byte_fallback=True, unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
        character_coverage=1.0, hard_vocab_limit=False, minloglevel=2)
    (model_dir / "tokenizer.vocab").unlink()
    vocab = spm.SentencePieceProcessor(model_file=str(model_dir / "tokenizer.model"))
    (model_dir / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "LlamaTokenizer", "bos_token": "<s>", "eos_token": "</s>",
        "unk_token": "<unk>", "model_max_length": 512, "add_bos_token": True,
        "add_eos_token": False}))
    build_model(vocab.get_piece_size(), hidden_size=64, intermediate_size=128).save_pretrained(
        model_dir)
    return model_dir


def test_a_sentencepiece_only_tokenizer_loads_like_llamas(spm_model):
    import sentencepiece as spm

    from fedllm.config import ModelConfig
    from fedllm.model import load_tokenizer

    assert not (spm_model / "tokenizer.json").exists()
    tok = load_tokenizer(ModelConfig(name_or_path=str(spm_model)))
    text = "Hello world, the capital of France is Paris"
    ids = tok(text)["input_ids"]
    assert ids[0] == tok.bos_token_id == 1 and tok.eos_token_id == 2
    ref = spm.SentencePieceProcessor(model_file=str(spm_model / "tokenizer.model"))
    assert ids[1:] == ref.encode(text)  # the very ids sentencepiece gives
    assert tok.decode(ids, skip_special_tokens=True) == text


def test_a_run_trains_on_it(spm_model, tmp_path):
    eng = run_quick(tmp_path, f"model.name_or_path={spm_model}", "rounds=1",
                    "task.template=vicuna")
    loss = eng.history[0]["train_loss"]
    assert loss == loss and loss > 0
