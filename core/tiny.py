"""The embedded default model ``tiny``: a small random-init Llama with an offline tokenizer.

Nothing is downloaded: the tokenizer is an untrained byte-level BPE (256 byte symbols, no
merges), so it covers any UTF-8 text; the model is initialised from a config with a fixed seed.
It is built once and cached under ``$FEDLLM_HOME/models/`` (atomically: build in a temporary
directory, then rename), so every run and every process loads the very same weights.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from .paths import fedllm_home

#: bump when the recipe changes, so caches built by older versions are not reused.
TINY_VERSION = "v2"
TINY_SHAPE = dict(hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                  # 0.02 (the Llama default) caps |logit| near 2.5 through the tied embedding,
                  # so a frozen random base could never become confident; 0.1 lets LoRA learn.
                  initializer_range=0.1)

SPECIALS = ["<unk>", "<s>", "</s>", "<pad>"]
CHAT_TEMPLATE = (
    "{% for m in messages %}"
    "{% if m['role'] == 'assistant' %}"
    "{{ '<|assistant|>\n' }}{% generation %}{{ m['content'] + eos_token }}{% endgeneration %}"
    "{{ '\n' }}"
    "{% else %}{{ '<|' + m['role'] + '|>\n' + m['content'] + '\n' }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)


def build_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(SPECIALS)}
    for ch in sorted(pre_tokenizers.ByteLevel.alphabet()):
        vocab[ch] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 1)]
    )
    hf = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
        pad_token="<pad>", model_max_length=TINY_SHAPE["max_position_embeddings"],
    )
    hf.chat_template = CHAT_TEMPLATE
    return hf


def build_model(vocab_size: int, seed: int = 0, **shape):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=vocab_size, bos_token_id=1, eos_token_id=2, pad_token_id=3,
                      tie_word_embeddings=True, **{**TINY_SHAPE, **shape})
    g = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        return LlamaForCausalLM(cfg)
    finally:
        torch.random.set_rng_state(g)


def tiny_path() -> Path:
    return fedllm_home() / "models" / f"tiny-{TINY_VERSION}"


def ensure_tiny(path: Path | None = None, **shape) -> Path:
    """Return the directory of the tiny model, building it on first use."""
    path = Path(path) if path else tiny_path()
    if (path / "config.json").is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}-", dir=path.parent))
    try:
        tok = build_tokenizer()
        model = build_model(len(tok), **shape)
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        try:
            os.rename(tmp, path)
        except OSError:  # another process won the race; theirs is identical
            if not (path / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path
