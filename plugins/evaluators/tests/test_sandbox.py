"""HumanEval's sandbox: correct code passes; loops time out; writes outside the working dir,
sockets, subprocesses and reads of the run directory fail; the test process is unharmed."""

from __future__ import annotations

import gzip
import json
import math
import os
import tempfile
from pathlib import Path

import pytest

from fedllm_evaluators.humaneval import build_program, extract_code, pass_at_k
from fedllm_evaluators.sandbox import network_isolation, run_program

from evalkit import EVAL


@pytest.fixture(scope="module")
def problems():
    with gzip.open(EVAL / "humaneval" / "HumanEval.jsonl.gz", "rt") as f:
        return [json.loads(line) for line in f][:3]


def test_canonical_solutions_pass_and_wrong_ones_fail(problems):
    for p in problems:
        assert run_program(build_program(p, p["canonical_solution"])).passed, p["task_id"]
    wrong = run_program(build_program(problems[0], "    return None\n"))
    assert wrong.status == "failed" and "AssertionError" in wrong.stderr


def test_infinite_loop_times_out():
    r = run_program("while True:\n    pass\n", timeout=1.5)
    assert r.status == "timeout" and r.seconds < 10


def test_write_outside_workdir_fails_inside_works(tmp_path):
    target = tmp_path / "pwned.txt"
    r = run_program(f"open({str(target)!r}, 'w').write('x')\n")
    assert r.status == "failed" and "PermissionError" in r.stderr
    assert not target.exists()
    r = run_program("import os\nos.open(%r, os.O_WRONLY | os.O_CREAT)\n" % str(target))
    assert r.status == "failed" and not target.exists()
    ok = run_program("open('out.txt', 'w').write('hi')\nassert open('out.txt').read() == 'hi'\n")
    assert ok.passed, ok.stderr


def test_socket_and_subprocess_fail(tmp_path):
    r = run_program("import socket\ns = socket.socket()\ns.connect(('127.0.0.1', 80))\n")
    assert r.status == "failed" and "PermissionError" in r.stderr
    marker = tmp_path / "ran"
    r = run_program(f"import os\nos.system('touch {marker}')\n")
    assert r.status == "failed" and not marker.exists()
    r = run_program(f"import subprocess\nsubprocess.run(['touch', {str(marker)!r}])\n")
    assert r.status == "failed" and not marker.exists()


def test_run_directory_is_not_readable(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "secret.txt").write_text("adapter weights")
    r = run_program(f"print(open({str(run / 'secret.txt')!r}).read())\n", deny=[run])
    assert r.status == "failed" and "denied" in r.stderr
    r = run_program(f"import os\nprint(os.listdir({str(run)!r}))\n", deny=[run])
    assert r.status == "failed"


def test_memory_limit():
    r = run_program("x = bytearray(1 << 31)\n", memory_mb=256)
    assert r.status == "failed" and "MemoryError" in r.stderr


def test_network_namespace_has_no_route_even_without_the_hook():
    if not network_isolation():
        pytest.skip("unshare is not usable here; only the audit hook blocks sockets")
    import subprocess
    import sys
    probe = ("import socket\ns = socket.socket()\ns.settimeout(2)\n"
             "try:\n    s.connect(('1.1.1.1', 53))\nexcept OSError as e:\n    print('blocked', e)\n")
    out = subprocess.run([*network_isolation(), sys.executable, "-c", probe],
                         capture_output=True, text=True, timeout=20)
    assert "blocked" in out.stdout


def test_the_test_process_is_unharmed(tmp_path):
    cwd, before = os.getcwd(), set(os.listdir(tempfile.gettempdir()))
    keep = tmp_path / "keep.txt"
    keep.write_text("still here")
    for src in ("import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n",
                f"import shutil\nshutil.rmtree({str(tmp_path)!r})\n",
                f"import os\nos.remove({str(keep)!r})\n",
                "import os\nos.chdir('/')\nopen('/etc/fedllm-x', 'w')\n"):
        assert run_program(src, timeout=5).status == "failed"
    assert keep.read_text() == "still here" and os.getcwd() == cwd
    leftovers = {p for p in set(os.listdir(tempfile.gettempdir())) - before
                 if p.startswith("fedllm-sandbox-")}
    assert not leftovers  # every throw-away working directory was removed


def test_pass_at_k_is_the_unbiased_estimator():
    for n, c, k in [(10, 3, 1), (10, 3, 5), (20, 0, 10), (5, 5, 1), (200, 13, 100)]:
        expected = 1 - math.comb(n - c, k) / math.comb(n, k)
        assert pass_at_k(n, c, k) == pytest.approx(expected)


def test_extract_code():
    assert extract_code("Here:\n```python\n    return 1\n```\nDone", "template") == "    return 1\n"
    assert extract_code("    return 1\n\ndef other():\n    pass", "completion") == "    return 1\n"
