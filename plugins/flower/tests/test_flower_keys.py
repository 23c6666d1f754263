"""`fedllm keys` keeps each party's files apart; `serve --keys` refuses a folder that holds the
CA's private key or a node's."""

from __future__ import annotations

import shutil

from click.testing import CliRunner

from fedllm.cli.main import main


def test_keys_layout_and_serve_refuses_private_keys(tmp_path, fed_json):
    out = tmp_path / "keys"
    r = CliRunner().invoke(main, ["keys", str(out), "--node", "alice", "--node", "bob"])
    assert r.exit_code == 0, r.output
    files = {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()}
    assert files == {
        "coordinator/ca.crt", "coordinator/server.crt", "coordinator/server.key",
        "coordinator/alice.pub", "coordinator/bob.pub",
        "nodes/alice/ca.crt", "nodes/alice/alice.key",
        "nodes/bob/ca.crt", "nodes/bob/bob.key",
        "ca/ca.key", "ca/ca.crt"}
    for private in ("coordinator/server.key", "nodes/alice/alice.key", "ca/ca.key"):
        assert (out / private).stat().st_mode & 0o077 == 0, private
    assert (out / "ca").stat().st_mode & 0o077 == 0 and (out / "nodes").stat().st_mode & 0o077 == 0
    # it says which file goes where
    assert "fedllm serve CONFIG --keys " + str(out / "coordinator") in r.output
    assert str(out / "nodes" / "alice" / "alice.key") in r.output
    assert "offline" in r.output

    def serve(keys):
        return CliRunner().invoke(main, ["serve", "--keys", str(keys), "--set",
                                         f"dataset.path={fed_json}"])

    r = serve(out)  # the top folder: point at the coordinator's
    assert r.exit_code == 2 and str(out / "coordinator") in r.output, r.output
    coord = out / "coordinator"
    shutil.copy(out / "ca" / "ca.key", coord / "backup.pem")  # any name: found by content
    r = serve(coord)
    assert r.exit_code == 2 and "the CA's private key" in r.output, r.output
    (coord / "backup.pem").unlink()
    shutil.copy(out / "nodes" / "alice" / "alice.key", coord / "alice.key")
    r = serve(coord)
    assert r.exit_code == 2 and "a SuperNode's private key" in r.output, r.output
    (coord / "alice.key").unlink()
    # a second run into the same folder would mix two CAs: refused
    r = CliRunner().invoke(main, ["keys", str(out), "--node", "carol"])
    assert r.exit_code == 2 and "not empty" in r.output, r.output


def test_serve_accepts_the_coordinator_folder(tmp_path):
    from fedllm_flower.deploy import make_keys, tls_from_dir

    make_keys(tmp_path / "k", ["a"], ["127.0.0.1"])
    tls = tls_from_dir(tmp_path / "k" / "coordinator")
    assert tls.key.name == "server.key" and tls.ca.is_file()
