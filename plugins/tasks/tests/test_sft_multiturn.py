"""Multi-turn SFT: exactly the assistant tokens are labelled, in every template."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from fedllm.errors import ConfigError, DataError
from fedllm.testing import call
from fedllm.tiny import build_tokenizer
from fedllm_tasks.sft import IGNORE, SFT, SFTConfig

CONV = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hi there"},
    {"role": "assistant", "content": "Hello!"},
    {"role": "user", "content": "What is 2+2?"},
    {"role": "assistant", "content": "Four."},
    {"role": "user", "content": "And 3+3?"},
    {"role": "assistant", "content": "Six."},
]
ANSWERS = ["Hello!", "Four.", "Six."]


def make_ctx(template=None):
    tok = build_tokenizer()
    if template is not None:
        tok.chat_template = template
    config = SimpleNamespace(max_position_embeddings=512)
    return SimpleNamespace(tokenizer=tok, model=SimpleNamespace(config=config))


def encode(ctx, template, conversations, **cfg):
    task = SFT(SFTConfig(template=template, **cfg))
    batch = {"client_id": ["c"] * len(conversations), "messages": conversations}
    return call(task, "fedllm_encode", ctx=ctx, batch=batch, split="train")


def labelled_runs(ids, labels):
    """The maximal runs of labelled positions, as lists of token ids."""
    runs, cur = [], []
    for t, lab in zip(ids, labels):
        if lab != IGNORE:
            assert lab == t  # a label is the token itself
            cur.append(t)
        elif cur:
            runs.append(cur)
            cur = []
    if cur:
        runs.append(cur)
    return runs


@pytest.mark.parametrize("template", ["vicuna", "chat"])
def test_three_turn_conversation_labels_exactly_the_assistant_answers(template):
    ctx = make_ctx()
    tok = ctx.tokenizer
    out = encode(ctx, template, [CONV])
    ids, labels = out["input_ids"][0], out["labels"][0]
    runs = labelled_runs(ids, labels)
    assert [tok.decode(r) for r in runs] == [a + tok.eos_token for a in ANSWERS]
    # every labelled run ends with EOS and nothing else in the sequence is labelled
    assert sum(len(r) for r in runs) == sum(len(tok(a, add_special_tokens=False)["input_ids"]) + 1
                                            for a in ANSWERS)
    # the unlabelled part is the whole prompt side: system, user turns and role markers
    prompt_text = tok.decode([t for t, lab in zip(ids, labels) if lab == IGNORE],
                             skip_special_tokens=True)
    for m in CONV:
        if m["role"] != "assistant":
            assert m["content"] in prompt_text
    if template == "vicuna":
        assert tok.decode(ids, skip_special_tokens=False).startswith("<s>Be brief. USER: Hi there")


def test_chat_template_without_generation_markers_still_masks_user_turns():
    plain = build_tokenizer().chat_template.replace("{% generation %}", "").replace(
        "{% endgeneration %}", "")
    ctx = make_ctx(plain)
    tok = ctx.tokenizer
    out = encode(ctx, "chat", [CONV])
    runs = labelled_runs(out["input_ids"][0], out["labels"][0])
    # each answer is what its turn adds after the generation prompt: text, EOS and the
    # template's own end-of-turn newline
    assert [tok.decode(r) for r in runs] == [a + tok.eos_token + "\n" for a in ANSWERS]


def test_single_and_multi_turn_samples_mix_and_keep_their_order():
    ctx = make_ctx()
    task = SFT(SFTConfig(template="vicuna"))
    batch = {"client_id": ["a", "b", "c"],
             "messages": [None, CONV[1:3], None],
             "instruction": ["Say yes.", None, "Say no."],
             "response": ["Yes.", None, "No."]}
    out = call(task, "fedllm_encode", ctx=ctx, batch=batch, split="train")
    assert out["client_id"] == ["a", "b", "c"]
    tok = ctx.tokenizer
    learned = [tok.decode([t for t in lab if t != IGNORE]) for lab in out["labels"]]
    assert learned == ["Yes.</s>", "Hello!</s>", "No.</s>"]


@pytest.mark.parametrize("template", ["vicuna", "chat"])
def test_one_turn_conversation_encodes_like_an_instruction_sample(template):
    ctx = make_ctx()
    task = SFT(SFTConfig(template=template))
    batch = {"client_id": ["a", "b"], "messages": [CONV[1:3], None],
             "instruction": [None, "Hi there"], "response": [None, "Hello!"]}
    out = call(task, "fedllm_encode", ctx=ctx, batch=batch, split="train")
    n = len(out["input_ids"][1])
    assert out["input_ids"][0][:n] == out["input_ids"][1]
    assert out["labels"][0][:n] == out["labels"][1]
    # a chat template may close the turn after EOS ("\n" here); that tail is not learned
    assert all(lab == IGNORE for lab in out["labels"][0][n:])
    assert len(out["input_ids"][0]) - n == (1 if template == "chat" else 0)


def test_truncation_keeps_the_answers_that_fit():
    ctx = make_ctx()
    full = encode(ctx, "vicuna", [CONV])["input_ids"][0]
    out = encode(ctx, "vicuna", [CONV], max_length=80)
    ids, labels = out["input_ids"][0], out["labels"][0]
    assert len(full) > 80 and ids == full[:80]
    assert ctx.tokenizer.decode(labelled_runs(ids, labels)[0]) == "Hello!</s>"
    assert encode(ctx, "vicuna", [CONV], max_length=80, overflow="drop")["input_ids"] == []


@pytest.mark.parametrize("conv, match", [
    ([{"role": "assistant", "content": "Hi"}], "answers no user turn"),
    ([{"role": "user", "content": "Hi"}], "no assistant turn"),
    ([{"role": "user", "content": "Hi"}, {"role": "bot", "content": "x"}], "role 'bot'"),
    ([{"role": "user", "content": "Hi"}, {"role": "system", "content": "x"}], "system message"),
])
def test_bad_conversations_are_named(conv, match):
    with pytest.raises(DataError, match=match):
        encode(make_ctx(), "vicuna", [conv])


def test_alpaca_is_single_turn_only():
    with pytest.raises(ConfigError, match="task.template: 'alpaca' is single-turn"):
        encode(make_ctx(), "alpaca", [CONV])


def test_multi_turn_run_trains_on_conversations(tmp_path):
    """Through datasets/Arrow (messages become a list of structs) and the engine."""
    from tests.helpers import run_quick

    data = {f"ip{c}": [{"messages": CONV}, {"messages": CONV[:3]}, {"messages": CONV[:5]}]
            for c in range(2)}
    path = tmp_path / "conv.json"
    path.write_text(json.dumps(data))
    eng = run_quick(tmp_path, "dataset.name=fedllm-bench-json", f"dataset.path={path}",
                    "task.template=vicuna", "evaluators=[]", "rounds=1")
    rows = eng.ctx.encoded["train"].to_list()
    assert len(rows) == 6
    tok = eng.ctx.tokenizer
    learned = tok.decode([t for t in rows[0]["labels"] if t != IGNORE])
    assert learned == "Hello!</s>Four.</s>Six.</s>"
    assert eng.history[0]["train_loss"] > 0
