"""Write docs/hooks.md from the contract (core/contract.py): `python scripts/hooks_doc.py`."""

from pathlib import Path

from fedllm.contract import reference_markdown

if __name__ == "__main__":
    path = Path(__file__).resolve().parents[1] / "docs" / "hooks.md"
    path.write_text(reference_markdown(), encoding="utf-8")
    print(f"wrote {path}")
