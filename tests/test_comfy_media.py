"""Animation export and video input in a real ComfyUI server: Load Video Frames / Load Image Folder ->
Save Animation through ComfyUI's HTTP API, the files read back with PyAV / Pillow, and the vid2vid
example workflow with random-weight models."""
from __future__ import annotations

import json
import os
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

import media_files as mfl
from comfy_server import PromptRejected
import comfy_graphs as cg
from model_cache import cached, place

pytestmark = pytest.mark.comfyui

REPO = Path(__file__).resolve().parent.parent
MOTION = "mm_v2_random.safetensors"
WORKFLOW = {"nodes": [{"id": 1, "type": "MotionKitLoadVideo"}], "links": [], "version": 0.4}


@pytest.fixture(scope="module")
def server(comfy_server):  # writes its videos and folders straight into input/
    place(comfy_server, {"animatediff_models": {MOTION: cached(MOTION)}})
    mfl.write_video(comfy_server.input_dir / "clip.mp4", frames=18, width=64, height=48, fps=12)
    mfl.write_video(comfy_server.input_dir / "v2v.mp4", frames=8, width=80, height=64, fps=8)
    (comfy_server.input_dir / "broken.mp4").write_text("this is not a video")
    mfl.write_png_folder(comfy_server.input_dir / "frames", frames=12, width=40, height=30)
    mixed = mfl.write_png_folder(comfy_server.input_dir / "mixed", frames=2, width=40, height=30)
    Image.fromarray(mfl.frame_rgb(2, 20, 20)).save(mixed / "frame2.png")
    return comfy_server


def run(server, prompt):
    """Queue with a workflow in extra_pnginfo, as the frontend does; return the RunResult."""
    pid = server.queue(prompt, extra_data={"extra_pnginfo": {"workflow": WORKFLOW}})
    return server.result(pid, server.wait(pid, timeout=300))


def load_video(**options):
    inputs = {"video": "clip.mp4", "frame_cap": 0, "skip_first": 0, "every_nth": 1, "width": 0, "height": 0,
              "resize_method": "lanczos", "crop": "center"}
    inputs.update(options)
    return {"class_type": "MotionKitLoadVideo", "inputs": inputs}


def load_folder(folder="frames", **options):
    node = load_video(**options)
    del node["inputs"]["video"]
    node["inputs"]["folder"] = folder
    return {"class_type": "MotionKitLoadImageFolder", "inputs": node["inputs"]}


def save(images, fmt, prefix, **options):
    inputs = {"images": images, "filename_prefix": prefix, "format": fmt, "fps": 8.0, "loop_count": 0,
              "pingpong": False, "crf": 19, "quality": 90}
    inputs.update(options)
    return {"class_type": "MotionKitSaveAnimation", "inputs": inputs}


def decoded(path: Path):
    """(frame indices, (height, width), fps, metadata) of a saved animation."""
    if path.suffix in (".mp4", ".webm"):
        with av.open(str(path)) as c:
            frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
            fps = float(c.streams.video[0].average_rate)
            meta = {k.lower(): v for k, v in c.metadata.items()}
    else:
        with Image.open(path) as im:
            frames, ms = [], []
            for k in range(im.n_frames):
                im.seek(k)
                frames.append(np.asarray(im.convert("RGB")))
                ms.append(im.info["duration"])
            fps = 1000 / np.mean(ms)
            if path.suffix == ".webp":
                meta = dict(v.partition(":")[::2] for v in im.getexif().values())
            else:
                meta = {k: json.dumps(v) for k, v in json.loads(im.info["comment"]).items()}
    return [mfl.frame_index(f) for f in frames], frames[0].shape[:2], fps, meta


def test_nodes_registered(server):
    info = server.object_info()
    spec = info["MotionKitLoadVideo"]["input"]["required"]
    assert spec["video"][1].get("video_upload") is True, "the frontend adds an upload button for video_upload"
    assert {"clip.mp4", "v2v.mp4"} <= set(spec["video"][0])
    assert info["MotionKitLoadVideo"]["output"] == ["IMAGE", "INT", "FLOAT"]
    assert info["MotionKitLoadImageFolder"]["output"] == ["IMAGE", "INT"]
    assert info["MotionKitSaveAnimation"]["output_node"] is True
    for name in ("MotionKitLoadVideo", "MotionKitLoadImageFolder", "MotionKitSaveAnimation"):
        assert info[name]["category"] == "MotionKit"
        for key, value in info[name]["input"]["required"].items():
            assert value[1].get("tooltip"), f"{name}.{key} has no tooltip"


def test_video_and_folder_to_every_format(server):
    prompt = {
        "1": load_video(frame_cap=6, skip_first=1, every_nth=2, width=32, height=32),
        "2": save(["1", 0], "mp4", "media/v", fps=["1", 2]),
        "3": save(["1", 0], "webm", "media/v", fps=["1", 2]),
        "4": save(["1", 0], "gif", "media/v", fps=["1", 2], pingpong=True),
        "5": save(["1", 0], "webp", "media/v", fps=["1", 2], loop_count=2),
        # frame_count -> batch size of an empty latent: SaveLatent shows the INT that came out
        "6": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": ["1", 1]}},
        "7": {"class_type": "SaveLatent", "inputs": {"samples": ["6", 0], "filename_prefix": "media/count"}},
        "8": load_folder(skip_first=2, every_nth=3),
        "9": save(["8", 0], "webp", "media/folder", fps=4.0),
        "10": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": ["8", 1]}},
        "11": {"class_type": "SaveLatent", "inputs": {"samples": ["10", 0], "filename_prefix": "media/fcount"}},
    }
    res = run(server, prompt).raise_for_status()
    picked = [1, 3, 5, 7, 9, 11]
    expected = {"2": picked, "3": picked, "4": picked + [9, 7, 5, 3], "5": picked}
    for node, fmt in (("2", "mp4"), ("3", "webm"), ("4", "gif"), ("5", "webp")):
        ui = res.outputs[node]
        assert ui["animated"] == [True] and len(ui["images"]) == 1
        item = ui["images"][0]
        assert item["subfolder"] == "media" and item["type"] == "output"
        assert item["filename"].startswith("v_") and item["filename"].endswith("_." + fmt)
        indices, size, fps, meta = decoded(server.output_file(item))
        assert indices == expected[node], fmt
        assert size == (32, 32)
        # fps output = 12 fps source / every_nth 2 (GIF stores 1/100 s: 170 ms)
        assert fps == pytest.approx(100 / 17 if fmt == "gif" else 6.0, rel=1e-3)
        assert json.loads(meta["prompt"])["1"]["class_type"] == "MotionKitLoadVideo"
        assert json.loads(meta["workflow"]) == WORKFLOW
    with Image.open(server.output_file(res.outputs["5"]["images"][0])) as im:
        assert im.info["loop"] == 2
    assert res.latents("7")[0].shape[0] == 6
    indices, size, _, _ = decoded(res.files("9", "images")[0])
    assert indices == [2, 5, 8, 11] and size == (30, 40), "natural name order: frame2 < frame10"
    assert res.latents("11")[0].shape[0] == 4


ERRORS = [
    ({"1": load_video(video="broken.mp4")}, ["broken.mp4 is not a video file"]),
    ({"1": load_video(skip_first=18)}, ["No frames left from clip.mp4", "18 frame(s)", "skip_first"]),
    ({"1": load_folder(folder="no_such_folder")}, ["no_such_folder", "does not exist"]),
    ({"1": load_folder(folder="")}, ["'folder' is empty"]),
    ({"1": load_folder(folder="mixed")}, ["frame2.png is 20x20 but frame0.png is 40x30", "set width and height"]),
]


def test_bad_input_is_clear_and_leaves_comfyui_usable(server):
    for nodes, phrases in ERRORS:
        prompt = dict(nodes, **{"2": save(["1", 0], "gif", "media/err")})
        res = run(server, prompt)
        assert res.status == "error", nodes
        assert res.execution_error["exception_type"].endswith(("MediaError", "MotionKitError", "PathNotAllowedError"))
        for phrase in phrases:
            assert phrase in res.error_message, f"{phrase!r} not in {res.error_message!r}"
    # Save Animation refuses a path outside the output folder (core's check), and ComfyUI goes on working
    res = run(server, {"1": load_folder(frame_cap=2), "2": save(["1", 0], "mp4", "../escape")})
    assert res.status == "error" and "outside the output folder" in res.error_message
    res = run(server, {"1": load_folder(folder="mixed", width=16, height=16), "2": save(["1", 0], "gif", "media/ok")})
    indices, size, _, _ = decoded(res.raise_for_status().files("2", "images")[0])
    assert indices == [0, 1, 2] and size == (16, 16)


# ---------------------------------------------------------------------------------------------
# Path inputs stay in ComfyUI's folders (media/safe_paths.py): a prompt cannot read the host

def test_path_inputs_cannot_leave_comfyuis_folders(server, tmp_path_factory):
    secret = mfl.write_png_folder(tmp_path_factory.mktemp("host_secret") / "photos", frames=3, width=16, height=16)
    mfl.write_video(secret / "private.mp4", frames=4, width=32, height=32, fps=8)
    link = server.input_dir / "innocent"
    link.symlink_to(secret, target_is_directory=True)
    up = os.path.relpath(secret, server.input_dir)  # ../../pytest-of-.../photos
    attempts = [str(secret), str(secret.parent / "not_there"), up, "innocent", "~", "~/photos"]
    messages = []
    for value in attempts:
        res = run(server, {"1": load_folder(folder=value, frame_cap=2), "2": save(["1", 0], "gif", "media/leak")})
        assert res.status == "error", f"{value!r} was read"
        assert res.execution_error["exception_type"].endswith("PathNotAllowedError")
        rest = res.error_message.replace(value, "<typed>")
        assert str(secret.parent) not in rest and "host_secret" not in rest, rest
        messages.append(rest)
    assert messages[0] == messages[1], "an outside folder that exists and one that does not get the same words"
    # a video name is validated before the prompt runs (the upload list is not checked by ComfyUI here)
    for value in (os.path.relpath(secret / "private.mp4", server.input_dir), "innocent/private.mp4"):
        with pytest.raises(PromptRejected) as e:
            server.queue({"1": load_video(video=value), "2": save(["1", 0], "gif", "media/leak")})
        text = json.dumps(e.value.response).replace(json.dumps(value)[1:-1], "<typed>")
        assert "is outside ComfyUI's input, output or temp folder" in text and "host_secret" not in text, text
    # whoever runs the server may allow more folders: <user dir>/motionkit_input_roots.txt (read on every use)
    settings = server.base_dir / "user" / "motionkit_input_roots.txt"
    settings.write_text(f"# test footage\n{secret.parent}\n")
    try:
        res = run(server, {"1": load_folder(folder=str(secret)), "2": save(["1", 0], "gif", "media/allowed"),
                           "3": load_folder(folder="innocent", frame_cap=1), "4": save(["3", 0], "gif", "media/al")})
        indices, size, _, _ = decoded(res.raise_for_status().files("2", "images")[0])
        assert indices == [0, 1, 2] and size == (16, 16)
    finally:
        settings.unlink()
    res = run(server, {"1": load_folder(folder=str(secret), every_nth=2), "2": save(["1", 0], "gif", "media/leak")})
    assert res.status == "error", "allowed only while the server's settings say so"


def upload(server, name: str, data: bytes) -> None:
    """POST /upload/image, as the node's upload button does (ComfyUI takes any file name into input/)."""
    import urllib.request
    import uuid
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"{name}\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + data + (
            f"\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"overwrite\"\r\n\r\ntrue\r\n"
            f"--{boundary}--\r\n").encode()
    req = urllib.request.Request(server.url + "/upload/image", data=body, method="POST",
                                 headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(req, timeout=30) as r:
        assert json.loads(r.read())["name"] == name


def test_load_video_refuses_files_that_point_at_other_files(server, tmp_path_factory):
    """Item: an uploaded playlist made FFmpeg read any media file the server can read. Playlists, concat lists
    (whatever their name) are refused by content, with the same words whether their target exists."""
    secret = tmp_path_factory.mktemp("host_secret_media")
    mfl.write_video(secret / "private.mp4", frames=6, width=32, height=32, fps=8)
    up = os.path.relpath(secret, server.input_dir)
    link = server.input_dir / "elsewhere"  # a link already in input/ (an upload cannot make one)
    link.symlink_to(secret, target_is_directory=True)
    files = {"look.m3u8": mfl.hls_playlist(f"{up}/private.mp4"),
             "gone.m3u8": mfl.hls_playlist(f"{up}/missing.mp4"),
             "hls_named.mp4": mfl.hls_playlist(f"{up}/private.mp4"),
             "list.ffconcat": mfl.ffconcat_list("elsewhere/private.mp4"),
             "list_named.mp4": mfl.ffconcat_list("elsewhere/private.mp4"),
             "list_named.mkv": mfl.ffconcat_list("clip.mp4")}
    messages = {}
    for name, text in files.items():
        upload(server, name, text.encode())
        res = run(server, {"1": load_video(video=name), "2": save(["1", 0], "gif", "media/leak")})
        assert res.status == "error", f"{name} was read"
        assert res.execution_error["exception_type"].endswith("MediaError"), res.error_message
        message = res.error_message
        assert f"{name} is not a video file Load Video Frames reads" in message, message
        for leak in (str(secret), "host_secret", str(server.base_dir), "private.mp4", "elsewhere"):
            assert leak not in message, (leak, message)
        messages[name] = message.replace(name, "<name>")
    assert messages["look.m3u8"] == messages["gone.m3u8"], "a playlist must not tell whether its target exists"
    assert len(set(messages.values())) == 1
    # a real MP4 uploaded the same way still loads
    real = tmp_path_factory.mktemp("upload") / "real.mp4"
    mfl.write_video(real, frames=5, width=32, height=32, fps=8)
    upload(server, "real_upload.mp4", real.read_bytes())
    res = run(server, {"1": load_video(video="real_upload.mp4"), "2": save(["1", 0], "gif", "media/real")})
    indices, size, _, _ = decoded(res.raise_for_status().files("2", "images")[0])
    assert indices == [0, 1, 2, 3, 4] and size == (32, 32)


# ---------------------------------------------------------------------------------------------
# The vid2vid example workflow

def test_vid2vid_ui_workflow_matches_api_workflow(server):
    ui = json.loads((REPO / "example_workflows" / "vid2vid_sd15.json").read_text())
    api = json.loads((REPO / "example_workflows" / "api" / "vid2vid_sd15_api.json").read_text())
    converted = cg.ui_to_api(ui, server.object_info())
    assert converted == {k: {"class_type": v["class_type"], "inputs": v["inputs"]} for k, v in api.items()}


@pytest.mark.example  # Load Video -> mp4 Save Animation: test_video_and_folder_to_every_format; the graph: the UI test
def test_vid2vid_example_runs(server):
    api = json.loads((REPO / "example_workflows" / "api" / "vid2vid_sd15_api.json").read_text())
    assert api["3"]["inputs"]["denoise"] == 0.6 and api["9"]["inputs"]["format"] == "mp4"
    api["4"]["inputs"]["ckpt_name"] = cg.CKPT
    api["10"]["inputs"]["model_name"] = MOTION
    api["12"]["inputs"].update(video="v2v.mp4", width=64, height=64)
    api["3"]["inputs"]["steps"] = 2
    res = run(server, api).raise_for_status()
    item = res.outputs["9"]["images"][0]
    assert res.outputs["9"]["animated"] == [True] and item["subfolder"] == "MotionKit"
    with av.open(str(server.output_file(item))) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
        assert float(c.streams.video[0].average_rate) == pytest.approx(8.0)
        assert json.loads(c.metadata["prompt"])["12"]["class_type"] == "MotionKitLoadVideo"
    assert len(frames) == 8 and frames[0].shape == (64, 64, 3), "8 frames of the 80x64 video, centre-cropped to 64x64"
