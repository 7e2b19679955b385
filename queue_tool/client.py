"""One ComfyUI server, over aiohttp: its HTTP routes and its /ws event stream (ComfyUI already depends on
aiohttp). Every request and wait is bounded; a server that stops answering raises ``ServerDead``."""
from __future__ import annotations

import asyncio
import json
import urllib.parse
import uuid
from typing import Any, Dict, List, Optional, Tuple

import aiohttp

from .batch import node_label, server_key

HTTP_TIMEOUT = 30.0          # one HTTP request
ALIVE_TIMEOUT = 5.0          # the "is it still there" probe
NET_ERRORS = (aiohttp.ClientError, OSError, asyncio.TimeoutError, ValueError)


class ServerDead(Exception):
    """The server stopped answering while a prompt was on it."""


class HTTPStatusError(Exception):
    def __init__(self, status: int, body: Any):
        super().__init__(f"HTTP {status}")
        self.status, self.body = status, body


class Server:
    """A ComfyUI server: HTTP calls, one websocket whose events are routed to the prompt they belong to."""

    def __init__(self, url: urllib.parse.SplitResult, session: aiohttp.ClientSession):
        self.url = url
        self.base = urllib.parse.urlunsplit((url.scheme, url.netloc, url.path.rstrip("/"), "", ""))
        self.label = url.netloc          # as typed: for messages and the manifest
        self.key = server_key(url)       # which server it is, however spelled (--resume matches on it)
        self.session = session
        self.client_id = uuid.uuid4().hex
        self.ws: Optional[aiohttp.ClientWebSocketResponse] = None
        self._reader: Optional[asyncio.Task] = None
        self.listeners: Dict[str, asyncio.Queue] = {}
        self.alive = True
        self.ours = 0            # our prompts queued or running there now

    # ------------------------------------------------------------------------------------ http
    async def request(self, method: str, path: str, data: Any = None, timeout: float = HTTP_TIMEOUT) -> Any:
        async with self.session.request(method, self.base + path, json=data,
                                        timeout=aiohttp.ClientTimeout(total=timeout)) as r:
            raw = await r.read()
            if r.status >= 400:
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = {"error": {"message": raw.decode(errors="replace")[:2000]}}
                raise HTTPStatusError(r.status, body)
            return json.loads(raw) if raw else None

    async def check(self) -> dict:
        return await self.request("GET", "/system_stats", timeout=10)

    async def answers(self, tries: int = 2) -> bool:
        """True when the server still answers /system_stats (a lost websocket alone is not death)."""
        for i in range(tries):
            try:
                await self.request("GET", "/system_stats", timeout=ALIVE_TIMEOUT)
                return True
            except NET_ERRORS + (HTTPStatusError,):
                if i + 1 < tries:
                    await asyncio.sleep(0.5)
        return False

    async def queue_remaining(self) -> int:
        """How many prompts the server has queued or running (anyone's): GET /prompt."""
        info = await self.request("GET", "/prompt", timeout=10)
        return int(((info or {}).get("exec_info") or {}).get("queue_remaining", 0))

    async def submit(self, prompt: dict, prompt_id: str) -> Tuple[Optional[str], Optional[dict]]:
        """POST /prompt. Returns (prompt_id, None) or (None, failure) when validation refused it."""
        payload = {"prompt": prompt, "client_id": self.client_id, "prompt_id": prompt_id}
        try:
            resp = await self.request("POST", "/prompt", payload, timeout=120)
        except HTTPStatusError as e:
            return None, validation_failure(e.body if isinstance(e.body, dict) else {}, prompt, e.status)
        if resp.get("node_errors"):
            # accepted with some outputs dropped for bad inputs: run nothing half-way
            await self.cancel(resp["prompt_id"])
            return None, validation_failure(resp, prompt, 200)
        return resp["prompt_id"], None

    async def history(self, prompt_id: str) -> Optional[dict]:
        h = await self.request("GET", "/history/" + urllib.parse.quote(prompt_id, safe=""))
        return (h or {}).get(prompt_id)

    async def queue_position(self, prompt_id: str) -> Optional[int]:
        """0 running, N waiting behind N-1 others, None when not in the queue."""
        q = await self.request("GET", "/queue")
        if any(item[1] == prompt_id for item in q.get("queue_running", [])):
            return 0
        pending = sorted(q.get("queue_pending", []), key=lambda item: item[0])
        for i, item in enumerate(pending):
            if item[1] == prompt_id:
                return i + 1 + len(q.get("queue_running", []))
        return None

    async def cancel(self, prompt_id: str) -> None:
        """Best effort: take *prompt_id* off the queue, interrupt it if it runs."""
        for path, data in (("/queue", {"delete": [prompt_id]}), ("/interrupt", {"prompt_id": prompt_id})):
            try:
                await self.request("POST", path, data, timeout=10)
            except NET_ERRORS + (HTTPStatusError,):
                pass

    # --------------------------------------------------------------------------------- websocket
    async def connect_ws(self) -> Optional[str]:
        """Open /ws as this client; None on success, else why not (then prompts are polled)."""
        path = self.url.path.rstrip("/") + "/ws?clientId=" + self.client_id
        ws_url = urllib.parse.urlunsplit(("wss" if self.url.scheme == "https" else "ws",
                                          self.url.netloc, path.split("?")[0], path.split("?")[1], ""))
        try:
            self.ws = await self.session.ws_connect(ws_url, timeout=aiohttp.ClientWSTimeout(ws_close=10),
                                                    heartbeat=30, max_msg_size=0)
        except NET_ERRORS as e:
            self.ws = None
            return str(e) or type(e).__name__
        self._reader = asyncio.ensure_future(self._read(self.ws))
        return None

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        why = "closed by the server"
        try:
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    try:
                        ev = json.loads(msg.data)
                    except ValueError:
                        continue
                    data = ev.get("data") if isinstance(ev, dict) else None
                    if isinstance(data, dict):
                        q = self.listeners.get(data.get("prompt_id"))
                        if q is not None:
                            q.put_nowait(ev)
                elif msg.type == aiohttp.WSMsgType.ERROR:
                    why = str(ws.exception() or "websocket error")
                    break
                # binary messages are previews: not ours to follow
        except (aiohttp.ClientError, OSError) as e:
            why = str(e) or type(e).__name__
        finally:
            if self.ws is ws:
                self.ws = None
            for q in list(self.listeners.values()):
                q.put_nowait({"type": "_ws_lost", "data": {"why": why}})

    async def close(self) -> None:
        if self.ws is not None:
            ws, self.ws = self.ws, None
            await ws.close()
        if self._reader is not None:
            self._reader.cancel()
            try:
                await self._reader
            except (asyncio.CancelledError, Exception):
                pass


# ---------------------------------------------------------------------------------------------
# What /prompt and /history say

def validation_failure(body: dict, prompt: dict, http_status: int) -> dict:
    err = body.get("error") or {}
    if not isinstance(err, dict):
        err = {"message": str(err)}
    lines = []
    for nid, ne in (body.get("node_errors") or {}).items():
        for e in ne.get("errors", []):
            detail = f": {e['details']}" if e.get("details") else ""
            lines.append(f"node {node_label(prompt, nid)}: {e.get('message', '')}{detail}")
    first = next(iter(body.get("node_errors") or {}), None)
    return {"stage": "validation", "node_id": first,
            "node_type": prompt.get(first, {}).get("class_type") if first else None,
            "exception_type": err.get("type"),
            "message": "; ".join(lines) or f"{err.get('message', '')} {err.get('details', '')}".strip()
            or f"HTTP {http_status}"}


def outputs_of(entry: dict) -> List[dict]:
    """Files listed in a /history entry's outputs: [{node_id, key, filename, subfolder, type}]."""
    files = []
    for nid, ui in (entry.get("outputs") or {}).items():
        if not isinstance(ui, dict):
            continue
        for key, items in ui.items():
            if not isinstance(items, list):
                continue
            for item in items:
                if isinstance(item, dict) and isinstance(item.get("filename"), str):
                    files.append({"node_id": str(nid), "key": key, "filename": item["filename"],
                                  "subfolder": item.get("subfolder", ""), "type": item.get("type", "output")})
    return files


def execution_failure(entry: Optional[dict], how: str) -> Optional[dict]:
    if entry is None:
        return {"stage": "execution", "node_id": None, "node_type": None, "exception_type": None,
                "message": how}
    status = entry.get("status") or {}
    for ev, data in status.get("messages", []):
        if ev == "execution_error":
            return {"stage": "execution", "node_id": data.get("node_id"), "node_type": data.get("node_type"),
                    "exception_type": data.get("exception_type"),
                    "message": (data.get("exception_message") or "").strip()}
        if ev == "execution_interrupted":
            return {"stage": "execution", "node_id": data.get("node_id"), "node_type": data.get("node_type"),
                    "exception_type": "Interrupted", "message": "interrupted"}
    if status.get("status_str") not in (None, "success"):
        return {"stage": "execution", "node_id": None, "node_type": None, "exception_type": None,
                "message": f"status {status.get('status_str')}"}
    return None


def file_path(f: dict) -> str:
    return "/".join(p for p in (f["type"], f["subfolder"], f["filename"]) if p)


# ---------------------------------------------------------------------------------------------
# A blocking websocket for scripts and tests that follow one prompt by hand

class WebSocketClosed(Exception):
    pass


class WebSocket:
    """``recv(timeout)`` -> (1, text) / (2, bytes) / None on timeout, over aiohttp, without asyncio in the
    caller (the test harness uses it to watch progress messages)."""

    def __init__(self, url: urllib.parse.SplitResult, path: str, timeout: float = 10.0):
        self.loop = asyncio.new_event_loop()
        scheme = "wss" if url.scheme == "https" else "ws"
        target = f"{scheme}://{url.netloc}{path}"

        async def open_():
            session = aiohttp.ClientSession(trust_env=False)
            try:
                ws = await session.ws_connect(target, timeout=aiohttp.ClientWSTimeout(ws_close=timeout),
                                              max_msg_size=0)
            except BaseException:
                await session.close()
                raise
            return session, ws

        try:
            self.session, self.ws = self.loop.run_until_complete(asyncio.wait_for(open_(), timeout))
        except BaseException:
            self.loop.close()
            raise

    def recv(self, timeout: float) -> Optional[Tuple[int, Any]]:
        try:
            msg = self.loop.run_until_complete(self.ws.receive(timeout=max(0.001, timeout)))
        except asyncio.TimeoutError:
            return None
        if msg.type == aiohttp.WSMsgType.TEXT:
            return 1, msg.data
        if msg.type == aiohttp.WSMsgType.BINARY:
            return 2, msg.data
        raise WebSocketClosed(f"websocket closed ({msg.type.name})")

    def close(self) -> None:
        async def close_():
            await self.ws.close()
            await self.session.close()
        try:
            self.loop.run_until_complete(close_())
        finally:
            self.loop.close()
