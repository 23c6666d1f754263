"""`fedllm push`: the model card, a local directory, and a real upload through huggingface_hub
to a stub Hub on 127.0.0.1 (never the network)."""

from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml
from click.testing import CliRunner

from fedllm.cli.main import main
from fedllm.testing import run_quick


@pytest.fixture(scope="module")
def finished_run(fedllm_home, tmp_path_factory):
    return run_quick(tmp_path_factory.mktemp("push"), "rounds=2", "eval_every=1").run_dir.path


class StubHub(BaseHTTPRequestHandler):
    """The endpoints `create_repo` + `upload_folder` use; commits land in `files`."""

    calls: list = []
    files: dict = {}

    def log_message(self, *args):  # quiet
        pass

    def _json(self, obj, status=200):
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):  # noqa: N802 - http.server's naming
        data = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        StubHub.calls.append((self.path, self.headers.get("Authorization")))
        if self.path == "/api/repos/create":
            req = json.loads(data)
            return self._json({"url": f"http://127.0.0.1/{req['organization']}/{req['name']}"
                               if req.get("organization") else f"http://127.0.0.1/{req['name']}"})
        if self.path == "/api/validate-yaml":  # the model card's front matter
            yaml.safe_load(json.loads(data)["content"].split("---")[1])
            return self._json({"errors": [], "warnings": []})
        if "/preupload/" in self.path:
            files = json.loads(data)["files"]
            return self._json({"files": [{"path": f["path"], "uploadMode": "regular",
                                          "shouldIgnore": False} for f in files]})
        if "/commit/" in self.path:
            for line in data.decode().splitlines():
                item = json.loads(line)
                if item["key"] == "file":
                    StubHub.files[item["value"]["path"]] = base64.b64decode(
                        item["value"]["content"])
            return self._json({"commitUrl": "http://127.0.0.1/me/adapter/commit/abc123",
                               "commitOid": "abc123", "pullRequestUrl": None})
        return self._json({"error": f"unexpected {self.path}"}, 404)


def test_model_card_records_config_versions_data_and_scores(finished_run, tmp_path):
    res = CliRunner().invoke(main, ["push", str(finished_run), "me/adapter", "--to-dir",
                                    str(tmp_path / "repo")])
    assert res.exit_code == 0, res.output
    repo = tmp_path / "repo"
    assert (repo / "adapter_model.safetensors").read_bytes() == \
        (finished_run / "adapter" / "adapter_model.safetensors").read_bytes()
    card = (repo / "README.md").read_text()
    front = yaml.safe_load(card.split("---")[1])
    assert front["library_name"] == "peft" and "fedllm" in front["tags"]
    metrics = front["model-index"][0]["results"][0]["metrics"]
    assert any(m["type"] == "heldout-loss/loss" for m in metrics)
    for needle in ("## Training configuration", "algorithm:\n  name: fedavg", "## Plugin versions",
                   "fedllm-algorithms 0.2.0", "## Data", "Dataset component `embedded`",
                   "## Evaluation", "| global | heldout-loss | loss |"):
        assert needle in card, needle
    assert (repo / "fedllm_config.yaml").is_file() and (repo / "fedllm_metrics.jsonl").is_file()


def test_push_uploads_through_huggingface_hub_to_a_stub_endpoint(finished_run, monkeypatch):
    from huggingface_hub import constants

    res = CliRunner().invoke(main, ["push", str(finished_run), "me/adapter"])
    if constants.HF_HUB_OFFLINE:  # the tests run offline: push says so and sends nothing
        assert res.exit_code == 2 and "HF_HUB_OFFLINE=1 forbids uploading" in res.output
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # only the stub on 127.0.0.1
    StubHub.calls.clear()
    StubHub.files.clear()
    server = ThreadingHTTPServer(("127.0.0.1", 0), StubHub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        endpoint = f"http://127.0.0.1:{server.server_address[1]}"
        res = CliRunner().invoke(main, ["push", str(finished_run), "me/adapter", "--endpoint",
                                        endpoint, "--token", "hf_test"])
    finally:
        server.shutdown()
        server.server_close()
    assert res.exit_code == 0, res.output
    assert "pushed: http://127.0.0.1/me/adapter/commit/abc123" in res.output
    paths = [p for p, _ in StubHub.calls]
    assert paths[0] == "/api/repos/create" and "/api/validate-yaml" in paths
    assert any(p.startswith("/api/models/me/adapter/commit/") for p in paths)
    assert all(auth == "Bearer hf_test" for _, auth in StubHub.calls)
    assert StubHub.files["adapter_model.safetensors"] == \
        (finished_run / "adapter" / "adapter_model.safetensors").read_bytes()
    assert b"## Evaluation" in StubHub.files["README.md"]
    assert {"adapter_config.json", "fedllm_config.yaml", "fedllm_metrics.jsonl"} <= \
        set(StubHub.files)


def test_push_refuses_a_run_without_a_final_adapter(fedllm_home, tmp_path):
    eng = run_quick(tmp_path, "rounds=2", until=1)
    res = CliRunner().invoke(main, ["push", str(eng.run_dir.path), "me/x", "--to-dir",
                                    str(tmp_path / "o")])
    assert res.exit_code == 2 and "has no final adapter" in res.output
