"""motionkit_queue.py against a real ComfyUI server: a batch over the seed runs, each prompt's files are
reported (followed over the /ws websocket, and by polling), failures name the node and the message."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from comfy_graphs import CKPT
from model_cache import cached, module_server

pytestmark = pytest.mark.comfyui

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "motionkit_queue.py"
MOTION = "mm_v2_random.safetensors"


def tiny_example_workflow(prefix: str) -> dict:
    """example_workflows/api/txt2anim_sd15_api.json at 64x64, 2 frames, 1 step, with the test models."""
    api = json.loads((REPO / "example_workflows" / "api" / "txt2anim_sd15_api.json").read_text())
    api["4"]["inputs"]["ckpt_name"] = CKPT
    api["10"]["inputs"]["model_name"] = MOTION
    api["5"]["inputs"].update(width=64, height=64, batch_size=2)
    api["3"]["inputs"]["steps"] = 1
    api["9"]["inputs"]["filename_prefix"] = prefix
    return api


server = module_server({"animatediff_models": {MOTION: cached(MOTION)}})


def queue_cli(server, workflow: dict, tmp_path: Path, *args, timeout=300):
    wf = tmp_path / "workflow_api.json"
    wf.write_text(json.dumps(workflow))
    report = tmp_path / "report.json"
    r = subprocess.run([sys.executable, str(SCRIPT), str(wf), "--server", server.url,
                        "--timeout", "240", "--report", str(report), *args],
                       capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    rep = json.loads(report.read_text()) if report.exists() else None
    return r, rep


def test_seed_batch_runs_and_reports_files(server, tmp_path):
    r, rep = queue_cli(server, tiny_example_workflow("qtest/seed"), tmp_path, "--set", "3.seed=1..2")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "websocket" not in r.stderr, r.stderr  # progress came over /ws, no fallback to polling
    # 'executing' events arrive only over the websocket: the tool followed the nodes as they ran
    assert "[1/2] node 3 (KSampler)" in r.stderr and "[2/2] node 9 (SaveAnimatedWEBP)" in r.stderr, r.stderr
    assert "summary: 2 prompts: 2 succeeded, 0 failed" in r.stdout

    prompts = rep["prompts"]
    assert [p["set"] for p in prompts] == [{"3.seed": 1}, {"3.seed": 2}]
    files = []
    for p in prompts:
        assert p["ok"] and p["failure"] is None
        (out,) = p["outputs"]
        assert out["node_id"] == "9" and out["filename"].endswith(".webp") and out["subfolder"] == "qtest"
        # the reported path is where ComfyUI wrote it, and it is what /history says for that prompt
        path = server.output_dir / out["subfolder"] / out["filename"]
        assert f"node 9 (SaveAnimatedWEBP): output/qtest/{out['filename']}" in r.stdout
        assert server.history(p["prompt_id"])["outputs"]["9"]["images"][0]["filename"] == out["filename"]
        from PIL import Image
        with Image.open(path) as im:
            assert im.n_frames == 2 and im.size == (64, 64)
        files.append(path.read_bytes())
    assert files[0] != files[1], "two seeds must give two different animations"


def test_failures_are_reported_and_exit_nonzero(server, tmp_path):
    wf = tiny_example_workflow("qtest/fail")
    # 2 frames run; 33 frames exceed the motion model's 32: MotionKit refuses it while sampling
    r, rep = queue_cli(server, wf, tmp_path, "--set", "5.batch_size=2,33", "--poll")
    assert r.returncode == 1, r.stdout + r.stderr
    ok, bad = rep["prompts"]
    assert ok["ok"] and ok["outputs"]
    assert not bad["ok"] and bad["outputs"] == []
    f = bad["failure"]
    assert (f["stage"], f["node_id"], f["node_type"]) == ("execution", "3", "KSampler")
    assert "at most 32 frames" in f["message"]
    assert "[2/2] FAILED in node 3 (KSampler)" in r.stdout
    assert "summary: 2 prompts: 1 succeeded, 1 failed" in r.stdout
    assert "[2/2] failed in node 3 (KSampler): " in r.stdout and "at most 32 frames" in r.stdout

    # refused by ComfyUI's validation: nothing runs, the node and the reason are named
    r, rep = queue_cli(server, wf, tmp_path, "--set", "10.model_name=no_such_model.safetensors")
    assert r.returncode == 1, r.stdout + r.stderr
    (p,) = rep["prompts"]
    assert p["prompt_id"] is None and p["failure"]["stage"] == "validation"
    assert p["failure"]["node_id"] == "10"
    assert "no_such_model.safetensors" in p["failure"]["message"]
    assert "[1/1] refused in node 10 (MotionKitLoadMotionModel)" in r.stdout
    assert server.queue_state()["queue_pending"] == []


def test_a_prompt_past_the_timeout_is_cancelled(server, tmp_path):
    slow = tiny_example_workflow("qtest/slow")
    slow["3"]["inputs"].update(steps=40, seed=424242)  # a few seconds on CPU, never cached
    r, rep = queue_cli(server, slow, tmp_path, "--timeout", "1")  # the last --timeout wins
    assert r.returncode == 1, r.stdout + r.stderr
    (p,) = rep["prompts"]
    assert "timed out after 1s (cancelled)" in p["failure"]["message"]
    # cancelled on the server too: the queue empties long before 40 steps would have finished
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        q = server.queue_state()
        if not q["queue_running"] and not q["queue_pending"]:
            break
        time.sleep(0.2)
    else:
        pytest.fail(f"the timed-out prompt is still queued or running: {q}")
    entry = server.history(p["prompt_id"])
    assert entry is None or entry["status"]["status_str"] == "error", entry
