"""Single-turn SFT starts every prompt with exactly one BOS, whatever the template."""

import pytest

from tests.helpers import run_quick


@pytest.mark.parametrize("template", ["alpaca", "vicuna", "chat"])
def test_prompt_starts_with_one_bos(tmp_path, template):
    eng = run_quick(tmp_path, f"task.template={template}", "rounds=1", name=template)
    tok = eng.ctx.tokenizer
    ids = eng.ctx.encoded["train"][0]["input_ids"]
    assert ids[0] == tok.bos_token_id and ids[1] != tok.bos_token_id
