"""HumanEval's sandbox: correct code passes; loops time out; writes outside the working dir,
sockets, subprocesses and reads of the run directory fail; the test process is unharmed; the
host's isolation is reported, and refused loudly when missing. The hostile-program suite is
``test_sandbox_attacks.py``."""

from __future__ import annotations

import gzip
import json
import math
import os
import socket
import tempfile
import time

import pytest
from evalkit import EVAL

from fedllm_evaluators import sandbox
from fedllm_evaluators.humaneval import build_program, extract_code, pass_at_k
from fedllm_evaluators.sandbox import MECHANISMS, SandboxUnavailable, isolation, run_program


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
    assert r.status == "failed" and not target.exists()
    r = run_program(f"import os\nos.open({str(target)!r}, os.O_WRONLY | os.O_CREAT)\n")
    assert r.status == "failed" and not target.exists()
    # Even without the audit hook the host file stays untouched: the sandbox's /tmp is its own
    # tmpfs, so creating the caller's tmp_path there "works" and changes nothing outside.
    r = run_program(f"import os\nos.makedirs({str(tmp_path)!r}, exist_ok=True)\n"
                    f"open({str(target)!r}, 'w').write('x')\n", audit_hook=False)
    assert r.passed, r.stderr
    assert not target.exists()
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
    read = f"print(open({str(run / 'secret.txt')!r}).read())\n"
    r = run_program(read, deny=[run])
    assert r.status == "failed" and "adapter weights" not in r.stdout
    # deny= is now belt and braces: the run directory is not in the sandbox's view at all
    r = run_program(read, audit_hook=False)
    assert r.status == "failed" and "FileNotFoundError" in r.stderr
    assert "adapter weights" not in r.stdout + r.stderr
    r = run_program(f"import os\nprint(os.listdir({str(run)!r}))\n", deny=[run])
    assert r.status == "failed" and "secret.txt" not in r.stdout


def test_memory_limit():
    r = run_program("x = bytearray(1 << 31)\n", memory_mb=256)
    assert r.status == "failed" and "MemoryError" in r.stderr


def test_network_is_empty_even_without_the_hook():
    """A real listener on the host's loopback is out of reach with the audit hook and seccomp
    off: the sandbox has its own network namespace (no traffic leaves this machine)."""
    assert isolation().isolated, isolation().detail
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.5)
    port = server.getsockname()[1]
    probe = ("import socket\ns = socket.socket()\ns.settimeout(2)\n"
             f"try:\n    s.connect(('127.0.0.1', {port}))\n    print('connected')\n"
             "except OSError as e:\n    print('blocked', e)\n")
    try:
        for mechanism in MECHANISMS:
            if isolation(mechanism).isolated:
                r = run_program(probe, mechanism=mechanism, audit_hook=False, seccomp=False)
                assert r.passed and "blocked" in r.stdout, (mechanism, r)
        with pytest.raises(socket.timeout):
            server.accept()
    finally:
        server.close()


def test_stdout_is_captured_and_the_environment_is_clean(monkeypatch):
    monkeypatch.setenv("FEDLLM_TEST_SECRET", "judge-key-123")
    r = run_program("import os\nprint('hello', sorted(os.environ))\n")
    assert r.passed and r.stdout.startswith("hello") and "FEDLLM_TEST_SECRET" not in r.stdout


def test_isolation_is_reported_and_cached():
    iso = isolation()
    assert iso.isolated and iso.mechanism in MECHANISMS, iso
    assert iso.mechanism in iso.describe() and "namespaces" in iso.describe()
    t0 = time.perf_counter()
    assert all(isolation() == iso for _ in range(100))
    assert time.perf_counter() - t0 < 0.05  # probed once, then cached
    with pytest.raises(ValueError):
        isolation("docker")


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_each_mechanism_runs_programs(problems, mechanism):
    iso = isolation(mechanism)
    if not iso.isolated:
        assert isolation().isolated, "no mechanism works: the sandbox is unavailable"
        pytest.skip(f"{mechanism} is not usable here: {iso.detail}")
    p = problems[0]
    assert run_program(build_program(p, p["canonical_solution"]), mechanism=mechanism).passed
    r = run_program("import os\nprint(os.getpid(), os.getuid(), "
                    "open('/proc/self/status').read().count('Seccomp:\\t2'))\n",
                    mechanism=mechanism)
    assert r.passed and r.stdout.split() == ["2", "65534", "1" if iso.seccomp else "0"], r


def test_refuses_to_run_unisolated_unless_asked(monkeypatch):
    monkeypatch.setattr(sandbox, "_probed", {"bwrap": "bwrap: not on PATH",
                                             "launcher": "launcher: unshare: EPERM"})
    iso = isolation()
    assert not iso.isolated and "bwrap: not on PATH" in iso.describe()
    with pytest.raises(SandboxUnavailable, match="allow_unisolated") as err:
        run_program("pass")
    assert isinstance(err.value, RuntimeError) and "bubblewrap" in str(err.value)
    sandbox._warn_unisolated.cache_clear()
    with pytest.warns(RuntimeWarning, match="WITHOUT kernel isolation"):
        r = run_program("print('ran')", allow_unisolated=True)
    assert r.passed and r.stdout == "ran\n"


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


def test_a_completion_that_exits_early_does_not_pass(problems):
    """``sys.exit(0)`` before the tests would exit 0: the nonce printed after ``check()``
    tells a finished test run from an early exit."""
    from fedllm_evaluators.humaneval import passed

    nonce = "n0nce-5e3a"
    early = run_program(build_program(problems[0], "    import sys; sys.exit(0)\n", nonce))
    assert early.status == "passed" and not passed(early, nonce)
    good = run_program(build_program(problems[0], problems[0]["canonical_solution"], nonce))
    assert passed(good, nonce)
