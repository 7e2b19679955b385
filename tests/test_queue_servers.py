"""motionkit_queue.py over two real ComfyUI servers on loopback: the sweep is spread over both, one server
is stopped while it runs a prompt and that prompt is run again on the other; the manifest (JSON and CSV)
records every prompt; an interrupted sweep resumes from it without running finished prompts again.

A light workflow of core nodes (Empty Image -> Image Blur -> Save Image): the second server is started
without any checkpoint and no SD model is loaded for these tests."""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.comfyui

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "motionkit_queue.py"


def light_workflow(prefix: str) -> dict:
    """About a second per prompt on a CPU core; the colour makes each prompt new (nothing cached)."""
    return {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 512, "height": 512, "batch_size": 2, "color": 0}},
        "2": {"class_type": "ImageBlur", "inputs": {"image": ["1", 0], "blur_radius": 31, "sigma": 10.0}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": prefix}},
    }


@pytest.fixture(scope="module")
def second_server(comfyui_root):
    """A second ComfyUI, without checkpoint (the session server is the first)."""
    from comfy_server import ComfyServer
    server = ComfyServer(comfyui_root)
    try:
        server.start()
        yield server
    finally:
        server.close()


def start_cli(tmp_path, workflow, *args):
    wf = tmp_path / "light_api.json"
    wf.write_text(json.dumps(workflow))
    return subprocess.Popen([sys.executable, str(SCRIPT), str(wf), *map(str, args)], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)


def read_manifest(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None  # not written yet (it is replaced atomically, never half-written)


def wait_for(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = pred()
        if got:
            return got
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


def label(server) -> str:
    return server.url.split("://", 1)[1]


def test_sweep_over_two_servers_survives_one_stopping(comfy_server, second_server, tmp_path):
    a, b = comfy_server, second_server
    manifest = tmp_path / "sweep.json"
    proc = start_cli(tmp_path, light_workflow("qmulti/img"), "--set", "1.color=1..6", "--server", a.url,
                     "--server", b.url, "--manifest", manifest, "--timeout", "120")
    try:
        # stop the second server while it runs one of the sweep's prompts
        def running_on_b():
            m = read_manifest(manifest)
            rows = m["prompts"] if m else []
            return [r for r in rows if r["server"] == label(b) and r["status"] == "running"]
        (victim,) = wait_for(running_on_b, 120, "a prompt running on the second server")[:1]
        b.kill()  # at once: on SIGINT ComfyUI may finish the prompt first, and then nothing is left to retry
        out, err = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, out + err
    assert "summary: 6 prompts: 6 succeeded, 0 failed" in out, out + err
    assert f"server {label(b)} stopped answering" in err and "retrying on another server" in err, err

    rows = json.loads(manifest.read_text())["prompts"]
    assert [r["inputs"] for r in rows] == [{"1.color": c} for c in range(1, 7)]
    assert all(r["status"] == "success" and r["seconds"] > 0 and r["prompt_id"] for r in rows), rows
    moved = rows[victim["index"] - 1]
    assert moved["server"] == label(a) and moved["attempts"] == 2 and moved["prompt_id"] != victim["prompt_id"]
    # least busy first: the first prompt went to the first server, the second to the idle second server
    # (stopped while running it); with the second server gone the first ran everything else
    assert victim["index"] == 2
    assert {r["server"] for r in rows} == {label(a)}
    for r in rows:
        assert len(r["outputs"]) == 2, r  # batch_size 2: two images per prompt
        for path in r["outputs"]:
            assert path.startswith("output/qmulti/img_") and (a.base_dir / path).is_file(), r
        # what /history says on the server that ran it
        images = a.history(r["prompt_id"])["outputs"]["3"]["images"]
        assert [Path(p).name for p in r["outputs"]] == [i["filename"] for i in images]
    with open(tmp_path / "sweep.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert list(table[0]) == ["index", "prompt_id", "inputs", "server", "status", "outputs", "seconds",
                              "attempts", "error"]
    assert [(t["prompt_id"], t["server"], t["status"], t["outputs"]) for t in table] == \
        [(r["prompt_id"], r["server"], "success", ";".join(r["outputs"])) for r in rows]
    assert json.loads(table[0]["inputs"]) == {"1.color": 1}


def test_an_interrupted_sweep_resumes_from_its_manifest(comfy_server, tmp_path):
    a = comfy_server
    manifest = tmp_path / "sweep.json"
    proc = start_cli(tmp_path, light_workflow("qresume/img"), "--set", "1.color=11..14", "--server", a.url,
                     "--manifest", manifest, "--timeout", "120")
    try:
        def one_done_next_running():
            m = read_manifest(manifest)
            st = [r["status"] for r in m["prompts"]] if m else []
            return st[:2] == ["success", "running"] and m
        before = wait_for(one_done_next_running, 120, "the first prompt done and the second running")
    finally:
        proc.kill()  # the tool dies (not a Ctrl-C: nothing is cancelled), its prompt runs on
        proc.communicate()
    first, second = before["prompts"][:2]

    # the same server spelled another way (it was 127.0.0.1): its in-flight prompt must still be found there
    assert "127.0.0.1" in a.url
    r = subprocess.run([sys.executable, str(SCRIPT), "--resume", str(manifest), "--server",
                        a.url.replace("127.0.0.1", "localhost"), "--timeout", "120"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "1 of 4 prompts already succeeded, 3 to run" in r.stderr, r.stderr
    assert "summary: 4 prompts: 4 succeeded (1 in the earlier run), 0 failed" in r.stdout, r.stdout
    rows = json.loads(manifest.read_text())["prompts"]
    assert all(x["status"] == "success" for x in rows), rows
    # the finished prompt is not run again, the one the killed run had on the server is picked up there
    assert rows[0]["prompt_id"] == first["prompt_id"] and rows[0]["outputs"] == first["outputs"]
    assert rows[1]["prompt_id"] == second["prompt_id"]
    ours = {x["prompt_id"] for x in rows}
    files = sorted(p.name for p in (a.output_dir / "qresume").iterdir())
    assert len(files) == 4 * 2, files  # 4 prompts, 2 images each: nothing ran twice
    assert all(a.history(pid) for pid in ours)

    # a changed workflow is refused: the manifest's prompts would not be the workflow's
    wf = tmp_path / "light_api.json"
    changed = json.loads(wf.read_text())
    changed["2"]["inputs"]["sigma"] = 2.0
    wf.write_text(json.dumps(changed))
    r = subprocess.run([sys.executable, str(SCRIPT), "--resume", str(manifest), "--server", a.url],
                       cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "changed since the manifest" in r.stderr, r.stderr
