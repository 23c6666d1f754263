"""The sandbox against hostile programs (catalog in ``attacks/catalog.py``).

Every attack runs in four modes, all at once, from one judge process that holds a fake judge
key in its environment (``attacks/judge.py``):

* ``control``: a plain ``python`` child, as generated code ran before the sandbox existed. The
  attack must *succeed* there (on a harmless stand-in where the real target would hurt this
  machine), which shows the attack is real;
* ``sandbox``: ``run_program`` as HumanEval calls it (every layer on). The attack's effect on the
  host must be absent: canary intact, listener never reached, victim alive, no secret in the
  output, no process left, no file written later;
* ``bwrap-ns`` and ``launcher-ns``: each mechanism with the audit hook and seccomp switched off,
  to show that the kernel namespaces and the read-only view hold on their own.

Nothing is skipped when the host cannot isolate: the ``sandbox`` runs then raise
SandboxUnavailable and these tests fail. Only a mechanism-specific mode is skipped when that
mechanism is missing (bubblewrap not installed, say) — the default mode still runs everything.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from attacks.arena import Arena
from attacks.catalog import ATTACKS, CATEGORIES, LIMITS, TREE, Attack

import fedllm_evaluators
from fedllm_evaluators.sandbox import isolation

TESTS = Path(__file__).resolve().parent
PROJECT_FILE = TESTS.parents[2] / "README.md"
NS_MODES = {"bwrap-ns": "bwrap", "launcher-ns": "launcher"}
NS_ATTACKS = [a for a in ATTACKS if a.namespaces_block]


def _modes() -> list[str]:
    return ["control", "sandbox"] + [m for m, mech in NS_MODES.items()
                                     if isolation(mech).isolated]


def _prepare(arena: Arena, attack: Attack, mode: str) -> dict:
    """Set up one (attack, mode) run's targets and return its entry of the judge's plan."""
    ctx = arena.context(attack.name, mode)
    for what in attack.setup:
        {"canary": arena.add_canary, "victim": arena.add_victim,
         "leak": arena.add_leaked_dir}[what](ctx)
    if attack.params:
        ctx.params.update(attack.params(arena, ctx))
    kwargs = {"timeout": attack.timeout, **attack.run}
    if mode != "control":
        kwargs["deny"] = [str(arena.run_dir)]  # as humaneval passes the run directory
    expected = attack.settle + (attack.timeout if attack.category in (TREE, LIMITS) else 0)
    return {"id": f"{attack.name}/{mode}", "mode": mode, "source": attack.source(ctx),
            "kwargs": kwargs, "dir": str(ctx.dir), "leak_dir": ctx.params.get("leak_dir"),
            "control_timeout": attack.timeout, "expected_seconds": expected, "ctx": ctx}


def _run_judge(arena: Arena, plan: list[dict]) -> dict[str, dict]:
    plan_file, results_file = arena.root / "plan.json", arena.root / "results.json"
    plan_file.write_text(json.dumps([{k: v for k, v in p.items() if k != "ctx"} for p in plan]))
    package_dir = str(Path(fedllm_evaluators.__file__).resolve().parents[1])
    env = {**os.environ, "FEDLLM_TEST_SECRET": arena.secret,
           "PYTHONPATH": os.pathsep.join([package_dir, os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, str(TESTS / "attacks" / "judge.py"), str(plan_file),
                           str(results_file), arena.judge_marker], env=env, check=False,
                          cwd=arena.judge_cwd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"the judge died (rc {proc.returncode}): {proc.stderr[-3000:]}"
    return {r["id"]: r for r in json.loads(results_file.read_text())}


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory) -> dict[str, tuple[str | None, dict]]:
    """Run every attack in every mode once; map 'name/mode' to (evidence of its effect or
    None, the run's result)."""
    arena = Arena(tmp_path_factory.mktemp("attacks"), PROJECT_FILE)
    try:
        plan = [_prepare(arena, a, m) for a in ATTACKS for m in _modes()
                if a.namespaces_block or m not in NS_MODES]
        results = _run_judge(arena, plan)
        settle_until = max([results[p["id"]]["start"] + a.settle
                            for p in plan for a in [_attack(p)] if a.settle], default=0)
        time.sleep(max(0.0, settle_until - time.time()))  # let late writers try their luck
        out = {}
        for p in plan:
            res = results[p["id"]]
            evidence = None if "error" in res else _attack(p).check(arena, p["ctx"], res)
            out[p["id"]] = (evidence, res)
        yield out
    finally:
        arena.cleanup()


def _attack(entry: dict) -> Attack:
    return next(a for a in ATTACKS if a.name == entry["ctx"].attack)


def _describe(res: dict) -> str:
    if "error" in res:
        return res["error"]
    return (f"status={res['status']} rc={res['returncode']}\nstdout: {res['stdout'][-1500:]}"
            f"\nstderr: {res['stderr'][-1500:]}")


def test_catalog_is_broad():
    names = [a.name for a in ATTACKS]
    assert len(names) >= 40 and len(set(names)) == len(names)
    assert {a.category for a in ATTACKS} == set(CATEGORIES)


@pytest.mark.parametrize("attack", ATTACKS, ids=lambda a: a.name)
def test_attack_works_unsandboxed(outcomes, attack):
    if attack.needs_root and os.geteuid() != 0:
        pytest.skip("showing this attack's effect unsandboxed needs root")
    evidence, res = outcomes[f"{attack.name}/control"]
    assert evidence, f"{attack.name} had no effect even without the sandbox ({attack.control})" \
                     f": {_describe(res)}"


@pytest.mark.parametrize("attack", ATTACKS, ids=lambda a: a.name)
def test_attack_is_blocked_by_the_sandbox(outcomes, attack):
    evidence, res = outcomes[f"{attack.name}/sandbox"]
    assert "error" not in res, _describe(res)
    assert evidence is None, f"{attack.name} ({attack.category}) got through: {evidence}\n" \
                             f"{_describe(res)}"


@pytest.mark.parametrize("mode", list(NS_MODES))
@pytest.mark.parametrize("attack", NS_ATTACKS, ids=lambda a: a.name)
def test_attack_is_blocked_by_the_namespaces_alone(outcomes, attack, mode):
    key = f"{attack.name}/{mode}"
    if key not in outcomes:
        pytest.skip(f"{NS_MODES[mode]} is not usable here: {isolation(NS_MODES[mode]).detail}")
    evidence, res = outcomes[key]
    assert "error" not in res, _describe(res)
    assert evidence is None, f"{attack.name} got through {mode}: {evidence}\n{_describe(res)}"
