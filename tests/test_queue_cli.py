"""motionkit_queue.py without a server: --set parsing, batch expansion, workflow checks, its aiohttp
websocket side against a small aiohttp server, and the CLI's refusals (exit 2)."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import motionkit_queue as mq

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "motionkit_queue.py"
API = REPO / "example_workflows" / "api" / "txt2anim_sd15_api.json"
UI = REPO / "example_workflows" / "txt2anim_sd15.json"


@pytest.fixture()
def wf():
    return mq.load_workflow(str(API))


def values(spec, wf, **kw):
    return mq.parse_assignment(spec, wf, **kw).values


def test_values_are_typed_like_the_workflow(wf):
    assert values("3.seed=7", wf) == [7] and isinstance(values("3.seed=7", wf)[0], int)
    assert values("3.cfg=7", wf) == [7.0] and isinstance(values("3.cfg=7", wf)[0], float)
    assert values("9.lossless=true", wf) == [True]
    assert values("9.lossless=off", wf) == [False]
    assert values("6.text=42", wf) == ["42"]  # text stays text
    assert values("3.sampler_name=euler,dpmpp_2m", wf) == ["euler", "dpmpp_2m"]


def test_ranges_and_lists(wf):
    assert values("3.seed=1..8", wf) == list(range(1, 9))
    assert values("3.seed=8..5", wf) == [8, 7, 6, 5]
    assert values("3.seed=0..10..5", wf) == [0, 5, 10]
    assert values("3.seed=1,5..6,100", wf) == [1, 5, 6, 100]
    assert values("3.cfg=5,7.5,9", wf) == [5.0, 7.5, 9.0]
    assert values("11.motion_scale=0..1..0.25", wf) == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert values("11.motion_scale=0..0.3..0.1", wf) == [0.0, 0.1, 0.2, 0.3]  # no float drift
    assert values("6.text=a..b", wf) == ["a..b"]  # ranges only for numbers
    assert values(r"6.text=a cat\, walking,a dog", wf) == ["a cat, walking", "a dog"]


def test_at_file_gives_one_verbatim_value_per_line(wf, tmp_path):
    f = tmp_path / "prompts.txt"
    f.write_text("a cat, walking\n\n  a dog at night  \n1..3\n", encoding="utf-8")
    assert values(f"6.text=@{f}", wf) == ["a cat, walking", "  a dog at night  ", "1..3"]
    seeds = tmp_path / "seeds.txt"
    seeds.write_text("3\n5\n")
    assert values(f"3.seed=@{seeds}", wf) == [3, 5]
    seeds.write_text("3\nfive\n")
    with pytest.raises(mq.UsageError, match="expected an integer, got 'five'"):
        values(f"3.seed=@{seeds}", wf)
    with pytest.raises(mq.UsageError, match="cannot read"):
        values(f"6.text=@{tmp_path / 'missing.txt'}", wf)


@pytest.mark.parametrize("spec, phrase", [
    ("3.seed=1.5", "expected an integer, got '1.5'"),
    ("3.cfg=high", "expected a number"),
    ("9.lossless=maybe", "expected true or false"),
    ("3.seed=5..1..1", "never gets from 5 to 1"),
    ("3.seed=1..5..0", "never gets"),
    ("3.model=1", "connected to node 11 (MotionKitApplyMotionModel)"),
    ("99.seed=1", "no node '99'"),
    ("3seed=1", "NODE.INPUT=VALUE"),
    ("3.seed", "NODE.INPUT=VALUE"),
    ("3.seed=1..100000", "more than --max-prompts"),
])
def test_bad_values_are_refused_with_the_reason(wf, spec, phrase):
    with pytest.raises(mq.UsageError, match=None) as e:
        mq.parse_assignment(spec, wf)
    assert phrase in str(e.value)


def test_nodes_by_unique_title(wf):
    a = mq.parse_assignment("KSampler.seed=3", wf)
    assert (a.node_id, a.input_name, a.values) == ("3", "seed", [3])
    with pytest.raises(mq.UsageError, match="not unique"):
        mq.parse_assignment("CLIPTextEncode.text=x", wf)  # nodes 6 and 7


def test_product_and_zip(wf):
    seeds = mq.parse_assignment("3.seed=1..3", wf)
    cfgs = mq.parse_assignment("3.cfg=5,7", wf)
    combos = mq.expand([seeds, cfgs])
    assert [[v for _, v in c] for c in combos] == [[1, 5.0], [1, 7.0], [2, 5.0], [2, 7.0], [3, 5.0], [3, 7.0]]
    prompts = [mq.build_prompt(wf, c) for c in combos]
    assert [(p["3"]["inputs"]["seed"], p["3"]["inputs"]["cfg"]) for p in prompts][-1] == (3, 7.0)
    assert wf["3"]["inputs"]["seed"] == 42, "the loaded workflow itself is never changed"
    assert prompts[0]["3"]["inputs"]["model"] == ["11", 0]

    steps = mq.parse_assignment("3.steps=10,20,30", wf)
    one = mq.parse_assignment("6.text=x", wf)
    zipped = mq.expand([seeds, steps, one], zip_=True)
    assert [[v for _, v in c] for c in zipped] == [[1, 10, "x"], [2, 20, "x"], [3, 30, "x"]]
    with pytest.raises(mq.UsageError, match="same length"):
        mq.expand([seeds, cfgs], zip_=True)
    with pytest.raises(mq.UsageError, match="more than --max-prompts 5"):
        mq.expand([seeds, cfgs], limit=5)
    assert mq.expand([]) == [[]]


def test_workflow_formats(tmp_path):
    with pytest.raises(mq.UsageError, match="Save \\(API\\)") as e:
        mq.load_workflow(str(UI))
    assert "UI-format" in str(e.value)
    body = tmp_path / "body.json"
    body.write_text(json.dumps({"prompt": json.loads(API.read_text()), "client_id": "x"}))
    assert mq.load_workflow(str(body))["3"]["class_type"] == "KSampler"
    junk = tmp_path / "junk.json"
    junk.write_text(json.dumps({"3": {"inputs": {}}}))
    with pytest.raises(mq.UsageError, match="not an API-format workflow"):
        mq.load_workflow(str(junk))
    junk.write_text("{nope")
    with pytest.raises(mq.UsageError, match="not JSON"):
        mq.load_workflow(str(junk))


@pytest.mark.parametrize("url, explicit, ok", [
    ("http://127.0.0.1:8188", False, True),
    ("http://localhost:8188", False, True),
    ("http://[::1]:8188", False, True),
    ("http://192.168.1.5:8188", False, False),
    ("http://192.168.1.5:8188", True, True),
    ("https://comfy.example:443/sub", True, True),
    ("ftp://127.0.0.1/", True, False),
    ("file:///etc/passwd", True, False),
    ("ws://127.0.0.1:8188", True, False),
    ("http://user:pw@127.0.0.1:8188", True, False),
])
def test_server_urls(url, explicit, ok):
    if ok:
        assert mq.check_server_url(url, explicit).hostname
    else:
        with pytest.raises(mq.UsageError):
            mq.check_server_url(url, explicit)


def test_outputs_and_failures_from_history():
    entry = {"outputs": {"9": {"images": [{"filename": "a_00001_.webp", "subfolder": "MotionKit", "type": "output"}],
                               "animated": [True]},
                         "12": {"text": ["not a file"]}},
             "status": {"status_str": "success", "messages": [["execution_start", {}]]}}
    (f,) = mq.outputs_of(entry)
    assert (f["node_id"], mq.file_path(f)) == ("9", "output/MotionKit/a_00001_.webp")
    assert mq.execution_failure(entry, "done") is None
    err = {"status": {"status_str": "error", "messages": [["execution_error", {
        "node_id": "3", "node_type": "KSampler", "exception_type": "MotionKitError",
        "exception_message": "too many frames\n"}]]}, "outputs": {}}
    assert mq.execution_failure(err, "done") == {
        "stage": "execution", "node_id": "3", "node_type": "KSampler",
        "exception_type": "MotionKitError", "message": "too many frames"}
    assert "timed out" in mq.execution_failure(None, "timed out after 5s")["message"]


# ---------------------------------------------------------------------------------------------
# The aiohttp websocket side, against a small aiohttp server that speaks like ComfyUI's /ws

def _ws_app(script):
    """An aiohttp app whose /ws plays *script*: ("text", obj) / ("bytes", b) / ("sleep", s) / ("close",)."""
    import asyncio
    from aiohttp import web

    async def ws_handler(request):
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        assert request.query.get("clientId")
        for step in script:
            if step[0] == "text":
                await ws.send_str(json.dumps(step[1]))
            elif step[0] == "bytes":
                await ws.send_bytes(step[1])
            elif step[0] == "sleep":
                await asyncio.sleep(step[1])
            elif step[0] == "close":
                await ws.close()
                return ws
        await asyncio.sleep(30)
        return ws

    app = web.Application()
    app.router.add_get("/ws", ws_handler)
    return app


def test_websocket_events_reach_their_prompt():
    import asyncio
    import urllib.parse
    import aiohttp
    from aiohttp import web
    from motionkit.queue_tool.client import Server  # the standalone tool's own package (motionkit_queue.py)

    big = {"type": "executed", "data": {"prompt_id": "A", "x": "y" * 300000}}
    script = [("text", {"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 1}}}}),
              ("text", {"type": "execution_start", "data": {"prompt_id": "A"}}),
              ("bytes", b"\x00\x00\x00\x01preview"),
              ("text", {"type": "progress", "data": {"prompt_id": "B", "value": 1, "max": 2, "node": "3"}}),
              ("text", {"type": "executing", "data": {"prompt_id": "A", "node": "3"}}),
              ("text", big), ("sleep", 0.2), ("close",)]

    async def main():
        runner = web.AppRunner(_ws_app(script))
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        try:
            async with aiohttp.ClientSession() as session:
                srv = Server(urllib.parse.urlsplit(f"http://127.0.0.1:{port}"), session)
                qa, qb = asyncio.Queue(), asyncio.Queue()
                srv.listeners.update(A=qa, B=qb)
                assert await srv.connect_ws() is None
                got_a = [await asyncio.wait_for(qa.get(), 10) for _ in range(4)]
                got_b = [await asyncio.wait_for(qb.get(), 10) for _ in range(2)]
                await srv.close()
                return got_a, got_b
        finally:
            await runner.cleanup()

    got_a, got_b = asyncio.run(main())
    # each prompt gets its own events, in order, the previews and status messages go nowhere, and a
    # closed websocket is announced to everyone waiting (they fall back to polling /history)
    assert [e["type"] for e in got_a] == ["execution_start", "executing", "executed", "_ws_lost"]
    assert got_a[2] == big
    assert [e["type"] for e in got_b] == ["progress", "_ws_lost"]


def test_blocking_websocket_for_scripts():
    import asyncio
    import threading
    import urllib.parse
    from aiohttp import web

    ready, stop = threading.Event(), threading.Event()
    box = {}

    def serve():
        async def main():
            runner = web.AppRunner(_ws_app([("sleep", 0.3), ("text", {"type": "x"}), ("bytes", b"\x01"),
                                            ("close",)]))
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            box["port"] = site._server.sockets[0].getsockname()[1]
            ready.set()
            while not stop.is_set():
                await asyncio.sleep(0.05)
            await runner.cleanup()
        asyncio.run(main())

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    assert ready.wait(10)
    try:
        ws = mq.WebSocket(urllib.parse.urlsplit(f"http://127.0.0.1:{box['port']}"), "/ws?clientId=t")
        try:
            assert ws.recv(timeout=0.05) is None  # nothing yet: a bounded wait, and the socket stays usable
            assert ws.recv(timeout=5) == (1, '{"type": "x"}')
            assert ws.recv(timeout=5) == (2, b"\x01")
            with pytest.raises(mq.WebSocketClosed):
                ws.recv(timeout=5)
        finally:
            ws.close()
    finally:
        stop.set()
        t.join(10)


# ---------------------------------------------------------------------------------------------
# The CLI itself (no server contacted)

def cli(*args, cwd=REPO, timeout=60):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_cli_dry_run_and_refusals(tmp_path):
    prompts = tmp_path / "p.txt"
    prompts.write_text("a cat\na dog, running\n")
    r = cli(API, "--set", "3.seed=1..2", "--set", f"6.text=@{prompts}", "--dry-run")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        "4 prompts (dry run; nothing sent to http://127.0.0.1:8188):",
        "[1/4] 3.seed=1 6.text=a cat", "[2/4] 3.seed=1 6.text=a dog, running",
        "[3/4] 3.seed=2 6.text=a cat", "[4/4] 3.seed=2 6.text=a dog, running"]

    r = cli(UI, "--dry-run")
    assert r.returncode == 2 and "Save (API)" in r.stderr and "UI-format" in r.stderr
    r = cli(API, "--set", "3.seed=x")
    assert r.returncode == 2 and "expected an integer" in r.stderr
    r = cli(API, "--server", "file:///etc/passwd")
    assert r.returncode == 2 and "only http://" in r.stderr
    r = cli(API, "--set", "3.seed=1", "--set", "3.seed=2", "--dry-run")
    assert r.returncode == 2 and "set the same input" in r.stderr


def test_cli_reports_an_unreachable_server_quickly():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    r = cli(API, "--server", f"http://127.0.0.1:{port}", timeout=30)
    assert r.returncode == 3
    assert "no ComfyUI answering" in r.stderr


def test_script_needs_only_the_standard_library_and_aiohttp():
    # the pack's folder name varies and ComfyUI may be elsewhere: the tool must not import them
    code = ("import sys, runpy; sys.argv=['q', '--help']\n"
            "try:\n    runpy.run_path(%r, run_name='__main__')\nexcept SystemExit: pass\n"
            "bad = [m for m in ('torch', 'comfy', 'nodes', 'motion', 'folder_paths') if m in sys.modules]\n"
            "print('IMPORTED', bad)") % str(SCRIPT)
    r = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, timeout=60)
    assert "IMPORTED []" in r.stdout, r.stdout + r.stderr


# ---------------------------------------------------------------------------------------------
# The manifest and --resume (no server: dry runs and refusals)

def test_manifest_json_and_csv(tmp_path, wf):
    import csv
    path = tmp_path / "sweep.json"
    m = mq.Manifest(str(path), str(API), wf, ["3.seed=1..2"], False)
    m.start([{"3.seed": 1}, {"3.seed": 2}])
    m.update(1, prompt_id="p1", server="127.0.0.1:8188", status="success", seconds=1.5,
             outputs=["output/a.webp", "output/b.webp"], attempts=1)
    data = json.loads(path.read_text())
    assert data["sets"] == ["3.seed=1..2"] and data["workflow"] == str(API)
    assert [r["status"] for r in data["prompts"]] == ["success", "pending"]
    with open(tmp_path / "sweep.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows[0] == {"index": "1", "prompt_id": "p1", "inputs": '{"3.seed": 1}', "server": "127.0.0.1:8188",
                       "status": "success", "outputs": "output/a.webp;output/b.webp", "seconds": "1.5",
                       "attempts": "1", "error": ""}
    assert rows[1]["status"] == "pending" and rows[1]["prompt_id"] == ""
    assert mq.Manifest.load(str(path)).rows[0]["prompt_id"] == "p1"
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(mq.UsageError, match="not a motionkit_queue manifest"):
        mq.Manifest.load(str(tmp_path / "x.json"))


def test_resume_skips_what_succeeded(tmp_path, wf):
    path = tmp_path / "sweep.json"
    m = mq.Manifest(str(path), str(API), wf, ["3.seed=1..3"], False)
    m.data["cwd"] = str(tmp_path)
    m.start([{"3.seed": s} for s in (1, 2, 3)])
    m.update(2, status="success", prompt_id="p2")
    m.update(3, status="failed", prompt_id="p3", error="boom")
    r = cli("--resume", path, "--dry-run")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        "2 prompts (dry run; nothing sent to http://127.0.0.1:8188; 1 already done):",
        "[1/3] 3.seed=1", "[3/3] 3.seed=3"]
    r = cli(API, "--resume", path)
    assert r.returncode == 2 and "from the manifest" in r.stderr
    r = cli("--resume", tmp_path / "missing.json")
    assert r.returncode == 2 and "cannot read manifest" in r.stderr
    r = cli(API, "--server", "http://127.0.0.1:1", "--server", "http://127.0.0.1:1/")
    assert r.returncode == 2 and "twice" in r.stderr
    r = cli(API, "--server", "http://127.0.0.1:1", "--server", "http://LOCALHOST:1")
    assert r.returncode == 2 and "twice" in r.stderr


def test_malformed_server_urls_are_usage_errors():
    """Exit 2 with the URL named, as the README says (they raised an uncaught ValueError: exit 1)."""
    for url in ("http://[::1", "http://[zz]:8188", "http://127.0.0.1:99999", "http://127.0.0.1:abc", "http://a b:1"):
        r = cli(API, "--server", url, "--dry-run")
        assert r.returncode == 2, (url, r.returncode, r.stderr)
        assert f"--server {url!r}" in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_server_key_is_one_server_however_spelled():
    key = lambda u: mq.server_key(mq.check_server_url(u, explicit=True))  # noqa: E731
    same = ["http://127.0.0.1:8188", "http://localhost:8188/", "http://[::1]:8188", "http://LocalHost.:8188",
            "http://127.0.0.2:8188", "http://[::ffff:127.0.0.1]:8188"]
    assert len({key(u) for u in same}) == 1, {u: key(u) for u in same}
    assert key("http://example.com") == key("http://EXAMPLE.com:80/") != key("https://example.com")
    assert key("https://example.com") == key("https://example.com:443")
    assert key("http://[2001:db8::1]:80") == key("http://[2001:0db8:0:0::1]")
    assert len({key("http://127.0.0.1:8188"), key("http://127.0.0.1:8189"), key("http://127.0.0.1:8188/comfy"),
                key("http://10.0.0.1:8188")}) == 4
