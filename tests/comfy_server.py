"""Run a real ComfyUI server as a subprocess for integration tests.

``ComfyServer`` builds a throw-away base directory::

    <tmp>/custom_nodes/MotionKit -> <repo root>          (the pack, symlinked)
    <tmp>/custom_nodes/motionkit_test_support -> tests/support_pack   (test-only nodes)
    <tmp>/custom_nodes/<name> -> another pack, when asked (extra_packs: AnimateDiff-Evolved for test_ade_equal.py)
    <tmp>/models/checkpoints/sd15_random.safetensors -> cached random SD1.5
    <tmp>/models/animatediff_models/   input/   output/   user/   temp/

starts ``main.py --cpu --listen 127.0.0.1 --port <free> --base-directory <tmp>``
with the test's own Python, waits for ``GET /system_stats`` and talks to it over
loopback HTTP only (stdlib ``urllib``, proxies bypassed, every call and loop
bounded by a timeout).

Typical use (see the ``comfy_server`` fixture in ``tests/conftest.py``)::

    res = comfy_server.run(prompt)          # API-format workflow dict
    assert res.status == "success", res.error_message
    lat = res.latents("9")                  # tensors written by SaveLatent "9"
    pngs = res.images("11")                 # files written by SaveImage "11"
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

_HERE = Path(os.path.abspath(__file__)).parent
if str(_HERE) not in sys.path:
    sys.path.insert(0, str(_HERE))

from comfy_env import COMFYUI_ROOT, REPO_ROOT, SKIP_REASON, is_comfyui_root  # noqa: E402

HOST = "127.0.0.1"
PACK_NAME = "MotionKit"
SUPPORT_PACK = Path(__file__).resolve().parent / "support_pack"  # test-only nodes (a tiny T5 CLIP), linked beside the pack
CHECKPOINT_NAME = "sd15_random.safetensors"
FRONTEND_ENV = "MOTIONKIT_FRONTEND_ROOT"
MODEL_FOLDERS = ("checkpoints", "animatediff_models", "animatediff_motion_lora",
                 "vae", "loras", "clip", "unet", "embeddings")

# A direct opener: never route loopback calls through an http(s)_proxy.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class ComfyServerError(RuntimeError):
    """Base error of the harness."""


class ComfyServerDied(ComfyServerError):
    """The ComfyUI process exited (message carries the log tail)."""


class PromptTimeout(ComfyServerError, TimeoutError):
    """A prompt did not finish in time."""


class PromptRejected(ComfyServerError):
    """``POST /prompt`` refused the prompt (validation failed).

    ``response`` is the server's JSON (``{"error": {...}, "node_errors": {...}}``).
    """

    def __init__(self, response: Any, http_status: int):
        self.response = response
        self.http_status = http_status
        self.error = response.get("error") if isinstance(response, dict) else None
        self.node_errors = response.get("node_errors", {}) if isinstance(response, dict) else {}
        super().__init__(f"prompt rejected (HTTP {http_status}): "
                         + json.dumps(response, indent=1)[:4000])


def free_port(host: str = HOST) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@dataclass
class RunResult:
    """Outcome of one executed prompt (built from its ``/history`` entry)."""

    prompt_id: str
    status: str                      # 'success' or 'error' (status_str in /history)
    error_message: Optional[str]     # exception_message of an execution_error (stripped),
                                     # "interrupted" for execution_interrupted, else None
    outputs: Dict[str, Any]          # /history outputs: {node_id: ui dict}
    history: Dict[str, Any] = field(repr=False)
    server: "ComfyServer" = field(repr=False, compare=False)

    @property
    def ok(self) -> bool:
        return self.status == "success"

    @property
    def messages(self) -> List[tuple]:
        """``[(event, data), ...]`` status messages, e.g. execution_start,
        execution_cached, execution_success / execution_error / execution_interrupted."""
        st = self.history.get("status") or {}
        return [tuple(m) for m in st.get("messages", [])]

    def message(self, event: str) -> Optional[dict]:
        for ev, data in self.messages:
            if ev == event:
                return data
        return None

    @property
    def execution_error(self) -> Optional[dict]:
        """The execution_error data (node_id, node_type, exception_type,
        exception_message, traceback, ...) or None."""
        return self.message("execution_error")

    @property
    def interrupted(self) -> bool:
        return self.message("execution_interrupted") is not None

    @property
    def cached_nodes(self) -> List[str]:
        """Node ids whose outputs came from ComfyUI's cache (not re-executed)."""
        data = self.message("execution_cached") or {}
        return [str(n) for n in data.get("nodes", [])]

    def raise_for_status(self) -> "RunResult":
        if not self.ok:
            err = self.execution_error or {}
            tb = "".join(err.get("traceback", []) or [])
            raise ComfyServerError(
                f"prompt {self.prompt_id} failed in node {err.get('node_id')} "
                f"({err.get('node_type')}): {err.get('exception_type')}: "
                f"{self.error_message}\n{tb}")
        return self

    def files(self, node_id: str, key: str) -> List[Path]:
        """Paths of the files listed under ``outputs[node_id][key]``."""
        node_out = self.outputs.get(str(node_id))
        if node_out is None:
            raise KeyError(f"node {node_id} has no outputs; nodes with outputs: "
                           f"{sorted(self.outputs)}")
        return [self.server.output_file(item) for item in node_out.get(key, [])]

    def latents(self, node_id: str) -> list:
        """Tensors from the ``.latent`` files a core SaveLatent node wrote."""
        from safetensors.torch import load_file
        return [load_file(str(p))["latent_tensor"] for p in self.files(node_id, "latents")]

    def images(self, node_id: str) -> List[Path]:
        """Paths of the images a SaveImage / PreviewImage node wrote."""
        return self.files(node_id, "images")


class ComfyServer:
    """A ComfyUI subprocess in its own temporary base directory."""

    def __init__(self, comfyui_root: Union[str, os.PathLike, None] = None, *,
                 checkpoint: Union[str, os.PathLike, None] = None,
                 checkpoint_name: str = CHECKPOINT_NAME,
                 pack_root: Union[str, os.PathLike, None] = REPO_ROOT,
                 pack_name: str = PACK_NAME,
                 support_pack: Union[str, os.PathLike, None] = SUPPORT_PACK,
                 extra_packs: Optional[Dict[str, Union[str, os.PathLike]]] = None,
                 base_dir: Union[str, os.PathLike, None] = None,
                 extra_args: Sequence[str] = (),
                 python: str = sys.executable,
                 env: Optional[Dict[str, str]] = None,
                 startup_timeout: float = 180.0):
        root = Path(comfyui_root) if comfyui_root is not None else COMFYUI_ROOT
        if root is None or not is_comfyui_root(root):
            raise ComfyServerError(SKIP_REASON or f"not a ComfyUI root: {root}")
        self.comfyui_root = Path(root)
        self.checkpoint = Path(checkpoint) if checkpoint else None
        self.checkpoint_name = checkpoint_name
        self.pack_root = Path(pack_root) if pack_root else None
        self.pack_name = pack_name
        self.support_pack = Path(support_pack) if support_pack else None
        self.extra_packs = {n: Path(p) for n, p in (extra_packs or {}).items()}  # custom_nodes/<name> -> a pack beside ours
        self._own_base = base_dir is None
        self.base_dir = Path(base_dir) if base_dir else Path(tempfile.mkdtemp(prefix="motionkit_comfy_"))
        self.extra_args = list(extra_args)
        self.python = python
        self.extra_env = dict(env or {})
        self.startup_timeout = startup_timeout
        self.port: Optional[int] = None
        self.process: Optional[subprocess.Popen] = None
        self.log_path = self.base_dir / "comfyui.log"
        self._log_file = None
        self.client_id = uuid.uuid4().hex
        self.startup_seconds: Optional[float] = None

    # ------------------------------------------------------------------ paths
    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def models_dir(self) -> Path:
        return self.base_dir / "models"

    @property
    def input_dir(self) -> Path:
        return self.base_dir / "input"

    @property
    def output_dir(self) -> Path:
        return self.base_dir / "output"

    @property
    def temp_dir(self) -> Path:
        return self.base_dir / "temp"

    def output_file(self, item: Dict[str, str]) -> Path:
        """Path of a ``{"filename", "subfolder", "type"}`` output entry."""
        folder = {"output": self.output_dir, "temp": self.temp_dir,
                  "input": self.input_dir}[item.get("type", "output")]
        return folder / item.get("subfolder", "") / item["filename"]

    def _layout(self) -> None:
        for d in ("custom_nodes", "input", "output", "user", "temp"):
            (self.base_dir / d).mkdir(parents=True, exist_ok=True)
        for d in MODEL_FOLDERS:
            (self.models_dir / d).mkdir(parents=True, exist_ok=True)
        if self.pack_root is not None:
            link = self.base_dir / "custom_nodes" / self.pack_name
            if not link.is_symlink():
                link.symlink_to(Path(os.path.abspath(self.pack_root)), target_is_directory=True)
        if self.support_pack is not None:
            link = self.base_dir / "custom_nodes" / "motionkit_test_support"
            if not link.is_symlink():
                link.symlink_to(self.support_pack, target_is_directory=True)
        for name, pack in self.extra_packs.items():
            link = self.base_dir / "custom_nodes" / name
            if not link.is_symlink():
                link.symlink_to(Path(os.path.abspath(pack)), target_is_directory=True)
        if self.checkpoint is not None:
            self.add_model("checkpoints", self.checkpoint_name, self.checkpoint)

    def add_model(self, folder: str, name: str, path: Union[str, os.PathLike],
                  copy: bool = False) -> Path:
        """Place *path* at ``models/<folder>/<name>`` (symlink, or copy)."""
        dest = self.models_dir / folder / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        if dest.is_symlink() or dest.exists():
            dest.unlink()
        src = Path(os.path.abspath(path))
        if copy:
            shutil.copyfile(src, dest)
        else:
            dest.symlink_to(src)
        return dest

    def add_input(self, name: str, path_or_bytes: Union[str, os.PathLike, bytes]) -> Path:
        """Put a file into the ``input/`` folder (bytes are written, paths copied)."""
        dest = self.input_dir / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(path_or_bytes, (bytes, bytearray)):
            dest.write_bytes(bytes(path_or_bytes))
        else:
            shutil.copyfile(path_or_bytes, dest)
        return dest

    # -------------------------------------------------------------- lifecycle
    def command(self) -> List[str]:
        return [self.python, "main.py", "--cpu",
                "--listen", HOST, "--port", str(self.port),
                "--base-directory", str(self.base_dir),
                "--disable-auto-launch",
                # api nodes talk to api.comfy.org; not needed here
                "--disable-api-nodes",
                # keep the sqlite db out of the ComfyUI checkout
                "--database-url", f"sqlite:///{self.base_dir / 'user' / 'comfyui.db'}",
                "--preview-method", "none",
                *self.frontend_args(),
                *self.extra_args]

    @staticmethod
    def frontend_args() -> List[str]:
        """``--front-end-root DIR`` when MOTIONKIT_FRONTEND_ROOT names a frontend's static folder (e.g.
        ``<pip --target dir>/comfyui_frontend_package/static``), so the browser tests also run against a newer
        frontend than the one ComfyUI pins; nothing (ComfyUI's own frontend package) otherwise."""
        root = os.environ.get(FRONTEND_ENV)
        if not root:
            return []
        if not (Path(root) / "index.html").is_file():
            raise ComfyServerError(f"{FRONTEND_ENV}={root} is not a frontend's static folder (no index.html); "
                                   f"give the comfyui_frontend_package/static folder of the installed package")
        return ["--front-end-root", str(Path(root).resolve())]

    def _env(self) -> Dict[str, str]:
        env = dict(os.environ)
        env.update({
            "PYTHONUNBUFFERED": "1",
            "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
            "HF_HUB_DISABLE_TELEMETRY": "1", "DO_NOT_TRACK": "1",
            "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
        })
        env.update(self.extra_env)
        return env

    def start(self, attempts: int = 3) -> "ComfyServer":
        self._layout()
        last_err: Optional[Exception] = None
        for _ in range(attempts):
            try:
                self._start_once()
                return self
            except ComfyServerDied as e:
                last_err = e
                if "address already in use" not in self.log_text().lower():
                    raise
        raise last_err  # type: ignore[misc]

    def _start_once(self) -> None:
        self.port = free_port()
        self._log_file = open(self.log_path, "ab")
        self._log_file.write(f"\n===== {' '.join(self.command())}\n".encode())
        self._log_file.flush()
        t0 = time.perf_counter()
        self.process = subprocess.Popen(
            self.command(), cwd=str(self.comfyui_root), env=self._env(),
            stdin=subprocess.DEVNULL, stdout=self._log_file, stderr=subprocess.STDOUT,
            start_new_session=True)  # own process group: killed as a group
        deadline = time.monotonic() + self.startup_timeout
        while True:
            if self.process.poll() is not None:
                rc = self.process.returncode
                self._close_log()
                raise ComfyServerDied(f"ComfyUI exited with code {rc} during startup; "
                                      f"log tail:\n{self.log_tail()}")
            try:
                self.get_json("/system_stats", timeout=5)
                break
            except (urllib.error.URLError, ConnectionError, OSError, ValueError):
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise ComfyServerError(f"ComfyUI did not answer /system_stats within "
                                       f"{self.startup_timeout:.0f}s; log tail:\n{self.log_tail()}")
            time.sleep(0.25)
        self.startup_seconds = time.perf_counter() - t0

    def is_running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def _check_alive(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            raise ComfyServerDied(f"ComfyUI exited with code {self.process.returncode}; "
                                  f"log tail:\n{self.log_tail()}")

    def kill(self) -> None:
        """End the server at once (SIGKILL to its process group), as a crash or a pulled plug would: a prompt it is
        running is lost, not finished (stop() lets ComfyUI finish it on SIGINT)."""
        p = self.process
        if p is not None and p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            p.wait(timeout=30)
        self.stop()

    def stop(self, timeout: float = 15.0) -> None:
        """Terminate the server's process group (SIGTERM, then SIGKILL)."""
        p = self.process
        if p is not None and p.poll() is None:
            for sig, wait in ((signal.SIGINT, timeout / 3), (signal.SIGTERM, timeout / 3),
                              (signal.SIGKILL, timeout / 3)):
                try:
                    os.killpg(p.pid, sig)
                except (ProcessLookupError, PermissionError):
                    break
                try:
                    p.wait(timeout=wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        if p is not None:
            # the group may still hold children after the leader exited
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        self._close_log()

    def close(self) -> None:
        """Stop the server and remove the base directory (if we created it)."""
        self.stop()
        if self._own_base:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    def _close_log(self) -> None:
        if self._log_file is not None:
            try:
                self._log_file.close()
            finally:
                self._log_file = None

    def __enter__(self) -> "ComfyServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # -------------------------------------------------------------------- log
    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 80) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def import_failures(self) -> List[str]:
        """Log lines of packs in ``<base>/custom_nodes`` that failed to import
        (ComfyUI's own comfy_extras failures, e.g. missing torchaudio, are left out)."""
        cn = str(self.base_dir / "custom_nodes")
        return [ln for ln in self.log_text().splitlines()
                if ("Cannot import" in ln or "(IMPORT FAILED)" in ln) and cn in ln]

    def pack_loaded(self) -> bool:
        """True when the pack imported (listed without IMPORT FAILED in the log)."""
        link = str(self.base_dir / "custom_nodes" / self.pack_name)
        return any(ln.rstrip().endswith(link) and "IMPORT FAILED" not in ln
                   and "seconds" in ln for ln in self.log_text().splitlines())

    # ------------------------------------------------------------------- http
    def _request(self, method: str, path: str, data: Any = None, timeout: float = 30.0):
        body = None
        headers = {}
        if data is not None:
            body = json.dumps(data).encode()
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request(self.url + path, data=body, method=method, headers=headers)
        with _OPENER.open(req, timeout=timeout) as r:
            raw = r.read()
        return json.loads(raw) if raw else None

    def get_json(self, path: str, timeout: float = 30.0):
        return self._request("GET", path, timeout=timeout)

    def post_json(self, path: str, data: Any, timeout: float = 30.0):
        return self._request("POST", path, data, timeout=timeout)

    def system_stats(self) -> dict:
        return self.get_json("/system_stats")

    def object_info(self, node_class: Optional[str] = None) -> dict:
        """``GET /object_info`` (all node classes) or one class's entry ({} if unknown)."""
        if node_class is None:
            return self.get_json("/object_info", timeout=120)
        info = self.get_json("/object_info/" + urllib.parse.quote(node_class, safe=""))
        return info.get(node_class, {}) if info else {}

    def queue(self, prompt: dict, prompt_id: Optional[str] = None,
              extra_data: Optional[dict] = None) -> str:
        """``POST /prompt``; return the prompt id.  Raises ``PromptRejected``
        with the server's error JSON if validation fails."""
        self._check_alive()
        payload: Dict[str, Any] = {"prompt": prompt, "client_id": self.client_id,
                                   "prompt_id": prompt_id or str(uuid.uuid4())}
        if extra_data:
            payload["extra_data"] = extra_data
        try:
            resp = self.post_json("/prompt", payload, timeout=120)
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                body = json.loads(raw)
            except ValueError:
                body = {"error": {"message": raw.decode(errors="replace")}}
            raise PromptRejected(body, e.code) from None
        if resp.get("node_errors"):
            # accepted, but some outputs were dropped for invalid inputs: the
            # rest would run; cancel it so tests see validation errors as errors
            self.cancel(resp["prompt_id"])
            raise PromptRejected(resp, 200)
        return resp["prompt_id"]

    def history(self, prompt_id: str) -> Optional[dict]:
        h = self.get_json("/history/" + urllib.parse.quote(prompt_id, safe=""))
        return (h or {}).get(prompt_id)

    def wait(self, prompt_id: str, timeout: float = 600.0, poll: float = 0.2) -> dict:
        """Poll ``/history/<id>`` until the prompt is done; return its entry.
        On timeout the prompt is cancelled (interrupted / dequeued)."""
        deadline = time.monotonic() + timeout
        while True:
            self._check_alive()
            entry = self.history(prompt_id)
            if entry is not None:
                return entry
            if time.monotonic() > deadline:
                self.cancel(prompt_id)
                raise PromptTimeout(f"prompt {prompt_id} not finished after {timeout:.0f}s; "
                                    f"log tail:\n{self.log_tail()}")
            time.sleep(poll)

    def cancel(self, prompt_id: str) -> None:
        """Best effort: drop *prompt_id* from the queue and interrupt it if running."""
        try:
            self.post_json("/queue", {"delete": [prompt_id]}, timeout=10)
            self.post_json("/interrupt", {"prompt_id": prompt_id}, timeout=10)
        except Exception:
            pass

    def result(self, prompt_id: str, entry: dict) -> RunResult:
        status = entry.get("status") or {}
        messages = status.get("messages", [])
        err = next((d for ev, d in messages if ev == "execution_error"), None)
        # ComfyUI appends a newline to exception_message; strip it here
        error_message = (err.get("exception_message") or "").strip() if err else None
        if error_message is None and any(ev == "execution_interrupted" for ev, _ in messages):
            error_message = "interrupted"
        return RunResult(prompt_id=prompt_id,
                         status=status.get("status_str", "unknown"),
                         error_message=error_message,
                         outputs=entry.get("outputs", {}),
                         history=entry, server=self)

    def run(self, prompt: dict, timeout: float = 600.0) -> RunResult:
        """Queue *prompt*, wait for it, return a ``RunResult``."""
        pid = self.queue(prompt)
        return self.result(pid, self.wait(pid, timeout=timeout))

    def run_watching_progress(self, prompt: dict, timeout: float = 300.0):
        """Queue *prompt* while listening on ComfyUI's /ws as this client, as the browser does; return
        ``(RunResult, [(node, value, max)] of the 'progress' messages of this prompt)``."""
        from motionkit.queue_tool.client import WebSocket  # the pack's queue tool's websocket (aiohttp)

        ws = WebSocket(urllib.parse.urlsplit(self.url), "/ws?clientId=" + self.client_id)
        try:
            prompt_id = self.queue(prompt)
            progress, event = [], {}
            while event.get("type") not in ("execution_success", "execution_error", "execution_interrupted"):
                msg = ws.recv(timeout=timeout)
                assert msg is not None, f"no websocket message for {timeout} s"
                if msg[0] != 1:
                    continue  # binary: previews
                event = json.loads(msg[1])
                data = event.get("data", {})
                if data.get("prompt_id") != prompt_id:
                    event = {}
                    continue
                if event["type"] == "progress":
                    progress.append((data["node"], data["value"], data["max"]))
        finally:
            ws.close()
        return self.result(prompt_id, self.wait(prompt_id)), progress

    def queue_state(self) -> dict:
        """``GET /queue``: ``{"queue_running": [...], "queue_pending": [...]}``."""
        return self.get_json("/queue")

    def free(self, unload_models: bool = True, free_memory: bool = True,
             settle: float = 1.0, timeout: float = 600.0) -> None:
        """``POST /free``: unload models and/or drop ComfyUI's node cache
        (``free_memory`` resets the executor, so the next prompt re-runs every node).

        The worker thread reads these flags only between prompts, and a prompt
        queued right after the POST can be picked up before them; so this waits
        until the queue is idle and then *settle* seconds more."""
        self.post_json("/free", {"unload_models": unload_models, "free_memory": free_memory})
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            q = self.queue_state()
            if not q.get("queue_running") and not q.get("queue_pending"):
                break
            time.sleep(0.2)
        time.sleep(settle)

    def interrupt(self) -> None:
        self.post_json("/interrupt", {})
