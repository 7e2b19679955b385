#!/usr/bin/env python3
"""Queue batches of an API-format ComfyUI workflow and report where each prompt's outputs went.

    python motionkit_queue.py workflow_api.json --set 3.seed=1..8 --set 6.text=@prompts.txt

A standalone script (stdlib only: no torch, no ComfyUI, no MotionKit imports), so it runs from the
pack's folder whatever that folder is called and from any Python 3.8+, also on a machine that only
talks to a ComfyUI server. Progress is followed over ComfyUI's /ws websocket (a minimal client on
stdlib sockets; polling /history when the websocket is unavailable). Every network wait is bounded.

--set NODE.INPUT=VALUE   NODE is a node id (or a unique node title); VALUE is parsed with the type of
                         the value the workflow already has there:
                           7            one value              1..8     an inclusive integer range
                           0..1..0.25   a range with a step    5,7.5,9  a list (\\, for a literal comma)
                           @file.txt    one value per line (verbatim: commas kept; blank lines skipped)
                         Several --set form the cartesian product; --zip pairs them instead.
Exit status: 0 all prompts succeeded, 1 some failed or timed out, 2 bad arguments or workflow,
3 the server could not be reached, 130 interrupted (our queued prompts are removed first).
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import ipaddress
import itertools
import json
import os
import socket
import ssl
import struct
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from typing import Any, Dict, List, Optional, Sequence, Tuple

DEFAULT_SERVER = "http://127.0.0.1:8188"
HTTP_TIMEOUT = 30.0          # one HTTP request
HISTORY_GRACE = 15.0         # after "done", how long /history may lag behind
DEFAULT_TIMEOUT = 3600.0     # one prompt, queue time included
DEFAULT_MAX_PROMPTS = 1000


class UsageError(Exception):
    """Bad arguments or workflow (exit 2)."""


class ServerError(Exception):
    """The server could not be reached or answered nonsense (exit 3)."""


# ---------------------------------------------------------------------------------------------
# Workflow loading

def load_workflow(path: str) -> Dict[str, dict]:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except OSError as e:
        raise UsageError(f"cannot read workflow {path}: {e.strerror or e}")
    except ValueError as e:
        raise UsageError(f"{path} is not JSON: {e}")
    if isinstance(data, dict) and isinstance(data.get("nodes"), list):
        raise UsageError(
            f"{path} is a UI-format workflow (it has 'nodes' and 'links'), which the HTTP API does "
            "not run. In ComfyUI, export it with 'Save (API)' (menu Workflow > Export (API); older "
            "menus: enable dev mode options in the settings) and pass that file.")
    if isinstance(data, dict) and isinstance(data.get("prompt"), dict) and "class_type" not in data["prompt"]:
        data = data["prompt"]  # a saved POST /prompt body
    if not isinstance(data, dict) or not data or not all(
            isinstance(v, dict) and "class_type" in v and isinstance(v.get("inputs", {}), dict)
            for v in data.values()):
        raise UsageError(f"{path} is not an API-format workflow: expected an object of "
                         "{node_id: {\"class_type\": ..., \"inputs\": {...}}}. Export the workflow "
                         "with 'Save (API)' in ComfyUI.")
    return {str(k): v for k, v in data.items()}


def node_label(workflow: Dict[str, dict], node_id: str) -> str:
    node = workflow.get(str(node_id)) or {}
    title = (node.get("_meta") or {}).get("title")
    ctype = node.get("class_type", "?")
    return f"{node_id} ({ctype})" if not title or title == ctype else f"{node_id} ({ctype} '{title}')"


# ---------------------------------------------------------------------------------------------
# --set parsing

class Assignment:
    """One --set: a node input and the list of values it takes."""

    def __init__(self, node_id: str, input_name: str, values: List[Any], spec: str):
        self.node_id, self.input_name, self.values, self.spec = node_id, input_name, values, spec

    @property
    def key(self) -> str:
        return f"{self.node_id}.{self.input_name}"

    def __repr__(self) -> str:
        return f"Assignment({self.key}={self.values!r})"


def resolve_node(workflow: Dict[str, dict], ref: str) -> str:
    if ref in workflow:
        return ref
    by_title = [nid for nid, n in workflow.items() if (n.get("_meta") or {}).get("title") == ref]
    if len(by_title) == 1:
        return by_title[0]
    known = ", ".join(node_label(workflow, n) for n in sorted(workflow, key=_id_sort_key))
    if len(by_title) > 1:
        raise UsageError(f"node title {ref!r} is not unique (nodes {', '.join(by_title)}); use the node id. "
                         f"Nodes: {known}")
    raise UsageError(f"no node {ref!r} in the workflow. Nodes: {known}")


def _id_sort_key(nid: str):
    return (0, int(nid), "") if nid.isdigit() else (1, 0, nid)


def split_list(text: str) -> List[str]:
    """Split on unescaped commas; ``\\,`` is a literal comma and ``\\\\`` a backslash."""
    items, cur, i = [], [], 0
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text) and text[i + 1] in ",\\":
            cur.append(text[i + 1])
            i += 2
            continue
        if c == ",":
            items.append("".join(cur))
            cur = []
        else:
            cur.append(c)
        i += 1
    items.append("".join(cur))
    return items


_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def _kind_of(current: Any, raw: str) -> str:
    if isinstance(current, bool):
        return "bool"
    if isinstance(current, int):
        return "int"
    if isinstance(current, float):
        return "float"
    if isinstance(current, str):
        return "str"
    # an input the workflow does not set yet: infer from the text
    for kind, conv in (("int", int), ("float", float)):
        try:
            conv(raw.split("..")[0].split(",")[0].strip())
            return kind
        except ValueError:
            pass
    return "bool" if raw.strip().lower() in ("true", "false") else "str"


def _scalar(text: str, kind: str, where: str) -> Any:
    t = text.strip()
    try:
        if kind == "int":
            return int(t)
        if kind == "float":
            v = float(t)
            if v != v or v in (float("inf"), float("-inf")):
                raise ValueError
            return v
    except ValueError:
        raise UsageError(f"{where}: expected {'an integer' if kind == 'int' else 'a number'}, got {text!r}")
    if kind == "bool":
        if t.lower() in _TRUE:
            return True
        if t.lower() in _FALSE:
            return False
        raise UsageError(f"{where}: expected true or false, got {text!r}")
    return text


def _range(text: str, kind: str, where: str, limit: int) -> List[Any]:
    parts = text.split("..")
    if len(parts) not in (2, 3):
        raise UsageError(f"{where}: a range is START..END or START..END..STEP, got {text!r}")
    start, end = (_scalar(p, kind, where) for p in parts[:2])
    if len(parts) == 3:
        step = _scalar(parts[2], kind, where)
    else:
        step = 1 if end >= start else -1
    if step == 0 or (end - start) * step < 0:
        raise UsageError(f"{where}: step {step} never gets from {start} to {end}")
    if kind == "int":
        n = (end - start) // step + 1
    else:
        n = int(round((end - start) / step, 9)) + 1  # tolerate 0.1-style float steps
    if n > limit:
        raise UsageError(f"{where}: the range {text!r} has {n} values, more than --max-prompts {limit}")
    if kind == "int":
        return [start + i * step for i in range(n)]
    return [round(start + i * step, 10) for i in range(n)]


def parse_values(raw: str, current: Any, where: str, limit: int = DEFAULT_MAX_PROMPTS,
                 base_dir: str = ".") -> List[Any]:
    """The values one ``--set`` gives, typed like *current* (the workflow's value)."""
    kind = _kind_of(current, raw)
    if raw.startswith("@"):
        path = os.path.join(base_dir, os.path.expanduser(raw[1:]))
        try:
            with open(path, encoding="utf-8") as f:
                lines = [ln.rstrip("\r\n") for ln in f]
        except OSError as e:
            raise UsageError(f"{where}: cannot read {raw[1:]}: {e.strerror or e}")
        lines = [ln for ln in lines if ln.strip()]
        if not lines:
            raise UsageError(f"{where}: {raw[1:]} has no values (one per line)")
        return [_scalar(ln, kind, f"{where} ({raw[1:]})") for ln in lines]
    values: List[Any] = []
    for item in split_list(raw):
        if kind in ("int", "float") and ".." in item:
            values.extend(_range(item, kind, where, limit))
        else:
            values.append(_scalar(item, kind, where))
    return values


def parse_assignment(spec: str, workflow: Dict[str, dict], limit: int = DEFAULT_MAX_PROMPTS,
                     base_dir: str = ".") -> Assignment:
    if "=" not in spec:
        raise UsageError(f"--set {spec!r}: expected NODE.INPUT=VALUE, e.g. 3.seed=1..8")
    target, raw = spec.split("=", 1)
    if "." not in target:
        raise UsageError(f"--set {spec!r}: expected NODE.INPUT=VALUE (the node id, a dot, the input name)")
    ref, input_name = target.rsplit(".", 1)  # titles may contain dots, input names do not
    ref, input_name = ref.strip(), input_name.strip()
    node_id = resolve_node(workflow, ref)
    node = workflow[node_id]
    inputs = node.get("inputs", {})
    where = f"--set {node_id}.{input_name} (node {node_label(workflow, node_id)})"
    current = inputs.get(input_name)
    if input_name not in inputs:
        widgets = [k for k, v in inputs.items() if not _is_link(v)]
        print(f"note: node {node_label(workflow, node_id)} has no input {input_name!r} in this workflow; "
              f"adding it (its inputs: {', '.join(widgets) or 'none'})", file=sys.stderr)
    elif _is_link(current):
        src = str(current[0])
        raise UsageError(f"{where}: this input is connected to node {node_label(workflow, src)}; "
                         f"set that node's value instead")
    values = parse_values(raw, current, where, limit, base_dir)
    return Assignment(node_id, input_name, values, spec)


def _is_link(v: Any) -> bool:
    return isinstance(v, list) and len(v) == 2 and isinstance(v[0], (str, int)) and isinstance(v[1], int)


def expand(assignments: Sequence[Assignment], zip_: bool = False,
           limit: int = DEFAULT_MAX_PROMPTS) -> List[List[Tuple[Assignment, Any]]]:
    """The batch: one list of (assignment, value) per prompt."""
    if not assignments:
        return [[]]
    if zip_:
        lengths = {len(a.values) for a in assignments if len(a.values) != 1}
        if len(lengths) > 1:
            detail = ", ".join(f"{a.key}: {len(a.values)}" for a in assignments)
            raise UsageError(f"--zip needs lists of the same length (or single values); got {detail}")
        n = lengths.pop() if lengths else 1
        combos = [[(a, a.values[i] if len(a.values) > 1 else a.values[0]) for a in assignments]
                  for i in range(n)]
    else:
        n = 1
        for a in assignments:
            n *= len(a.values)
        if n > limit:
            raise UsageError(f"the --set values make {n} prompts, more than --max-prompts {limit}")
        combos = [list(zip(assignments, vals)) for vals in itertools.product(*(a.values for a in assignments))]
    if len(combos) > limit:
        raise UsageError(f"the --set values make {len(combos)} prompts, more than --max-prompts {limit}")
    return combos


def build_prompt(workflow: Dict[str, dict], combo: Sequence[Tuple[Assignment, Any]]) -> Dict[str, dict]:
    prompt = json.loads(json.dumps(workflow))
    for a, value in combo:
        prompt[a.node_id].setdefault("inputs", {})[a.input_name] = value
    return prompt


def describe(combo: Sequence[Tuple[Assignment, Any]], width: int = 60) -> str:
    if not combo:
        return "(workflow as is)"
    parts = []
    for a, v in combo:
        s = v if isinstance(v, str) else json.dumps(v)
        s = s.replace("\n", " ")
        if len(s) > width:
            s = s[: width - 1] + "…"
        parts.append(f"{a.key}={s}")
    return " ".join(parts)


# ---------------------------------------------------------------------------------------------
# Server URL

def check_server_url(url: str, explicit: bool) -> urllib.parse.SplitResult:
    u = urllib.parse.urlsplit(url.strip())
    if u.scheme not in ("http", "https"):
        raise UsageError(f"--server {url!r}: only http:// (or https://) ComfyUI URLs are accepted")
    if not u.hostname:
        raise UsageError(f"--server {url!r}: no host in the URL")
    if u.username or u.password or u.query or u.fragment:
        raise UsageError(f"--server {url!r}: give only scheme://host:port[/path]")
    if not explicit and not _is_loopback(u.hostname):
        raise UsageError("the default server must be on this machine")
    return u


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# ---------------------------------------------------------------------------------------------
# Minimal websocket client (RFC 6455, client side: text/binary/ping/close; no extensions)

_WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class WebSocketClosed(Exception):
    pass


class WebSocket:
    def __init__(self, url: urllib.parse.SplitResult, path: str, timeout: float = 10.0):
        port = url.port or (443 if url.scheme == "https" else 80)
        sock = socket.create_connection((url.hostname, port), timeout=timeout)
        try:
            if url.scheme == "https":
                sock = ssl.create_default_context().wrap_socket(sock, server_hostname=url.hostname)
            key = base64.b64encode(os.urandom(16)).decode()
            host = url.hostname if ":" not in url.hostname else f"[{url.hostname}]"
            req = (f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                   f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n")
            sock.sendall(req.encode())
            self.sock, self.buf = sock, bytearray()
            head = self._read_until(b"\r\n\r\n", time.monotonic() + timeout)
            lines = head.decode("latin-1").split("\r\n")
            if len(lines[0].split()) < 2 or lines[0].split()[1] != "101":
                raise ServerError(f"websocket upgrade refused: {lines[0]!r}")
            headers = {ln.split(":", 1)[0].strip().lower(): ln.split(":", 1)[1].strip()
                       for ln in lines[1:] if ":" in ln}
            expect = base64.b64encode(hashlib.sha1(key.encode() + _WS_GUID).digest()).decode()
            if headers.get("sec-websocket-accept") != expect:
                raise ServerError("websocket upgrade: bad Sec-WebSocket-Accept")
        except BaseException:
            sock.close()
            raise
        self.fragments: List[bytes] = []
        self.frag_opcode = 0

    def _read_until(self, marker: bytes, deadline: float) -> bytes:
        while marker not in self.buf:
            self._fill(deadline)
            if len(self.buf) > 65536:
                raise ServerError("websocket upgrade: response headers too long")
        i = self.buf.index(marker) + len(marker)
        out = bytes(self.buf[:i])
        del self.buf[:i]
        return out

    def _fill(self, deadline: float) -> None:
        left = deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout()
        self.sock.settimeout(left)
        chunk = self.sock.recv(65536)
        if not chunk:
            raise WebSocketClosed("connection closed by the server")
        self.buf.extend(chunk)

    def _frame(self) -> Optional[Tuple[bool, int, bytes]]:
        """Take one whole frame off the buffer, or None when it is not all here yet."""
        b = self.buf
        if len(b) < 2:
            return None
        fin, opcode = bool(b[0] & 0x80), b[0] & 0x0F
        masked, n, i = bool(b[1] & 0x80), b[1] & 0x7F, 2
        if n == 126:
            if len(b) < 4:
                return None
            n, i = struct.unpack(">H", b[2:4])[0], 4
        elif n == 127:
            if len(b) < 10:
                return None
            n, i = struct.unpack(">Q", b[2:10])[0], 10
        if n > 256 * 1024 * 1024:
            raise ServerError("websocket frame too large")
        mask = b""
        if masked:
            if len(b) < i + 4:
                return None
            mask, i = bytes(b[i:i + 4]), i + 4
        if len(b) < i + n:
            return None
        payload = bytes(b[i:i + n])
        del b[:i + n]
        if masked:
            payload = bytes(c ^ mask[j % 4] for j, c in enumerate(payload))
        return fin, opcode, payload

    def recv(self, timeout: float) -> Optional[Tuple[int, bytes]]:
        """The next whole message as (opcode, payload): 1 text, 2 binary; None on timeout."""
        deadline = time.monotonic() + max(0.0, timeout)
        while True:
            frame = self._frame()
            if frame is None:
                try:
                    self._fill(deadline)
                except socket.timeout:
                    return None
                continue
            fin, opcode, payload = frame
            if opcode == 8:
                self.close()
                raise WebSocketClosed("the server closed the websocket")
            if opcode == 9:
                self._send(10, payload)
                continue
            if opcode == 10:
                continue
            if opcode == 0:
                self.fragments.append(payload)
                if fin:
                    msg = b"".join(self.fragments)
                    self.fragments = []
                    return self.frag_opcode, msg
                continue
            if not fin:
                self.frag_opcode, self.fragments = opcode, [payload]
                continue
            return opcode, payload

    def _send(self, opcode: int, payload: bytes) -> None:
        head = bytearray([0x80 | opcode])
        n = len(payload)
        if n < 126:
            head.append(0x80 | n)
        elif n < 65536:
            head.append(0x80 | 126)
            head += struct.pack(">H", n)
        else:
            head.append(0x80 | 127)
            head += struct.pack(">Q", n)
        mask = os.urandom(4)
        head += mask
        self.sock.settimeout(10)
        self.sock.sendall(bytes(head) + bytes(c ^ mask[j % 4] for j, c in enumerate(payload)))

    def close(self) -> None:
        try:
            self._send(8, struct.pack(">H", 1000))
        except OSError:
            pass
        try:
            self.sock.close()
        except OSError:
            pass


# ---------------------------------------------------------------------------------------------
# ComfyUI client

class Comfy:
    def __init__(self, url: urllib.parse.SplitResult):
        self.url = url
        self.base = urllib.parse.urlunsplit((url.scheme, url.netloc, url.path.rstrip("/"), "", ""))
        self.client_id = uuid.uuid4().hex
        # never route a ComfyUI call through an http(s)_proxy (a loopback server above all)
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        self.ws: Optional[WebSocket] = None

    def request(self, method: str, path: str, data: Any = None, timeout: float = HTTP_TIMEOUT) -> Any:
        body = json.dumps(data).encode() if data is not None else None
        req = urllib.request.Request(self.base + path, data=body, method=method,
                                     headers={"Content-Type": "application/json"} if body else {})
        with self.opener.open(req, timeout=timeout) as r:
            raw = r.read()
        return json.loads(raw) if raw else None

    def check(self) -> dict:
        try:
            return self.request("GET", "/system_stats", timeout=10)
        except (urllib.error.URLError, OSError, ValueError) as e:
            reason = getattr(e, "reason", e)
            raise ServerError(f"no ComfyUI answering at {self.base} ({reason}). Start ComfyUI, or pass "
                              f"--server http://HOST:PORT")

    def connect_ws(self) -> bool:
        path = (self.url.path.rstrip("/") or "") + "/ws?clientId=" + self.client_id
        try:
            self.ws = WebSocket(self.url, path, timeout=10)
            return True
        except (OSError, ServerError, WebSocketClosed) as e:
            print(f"note: no websocket at {self.base}/ws ({e}); following progress by polling /history",
                  file=sys.stderr)
            self.ws = None
            return False

    def submit(self, prompt: dict, prompt_id: str) -> Tuple[Optional[str], Optional[dict]]:
        """POST /prompt. Returns (prompt_id, None) or (None, failure) when validation refused it."""
        payload = {"prompt": prompt, "client_id": self.client_id, "prompt_id": prompt_id}
        try:
            resp = self.request("POST", "/prompt", payload, timeout=120)
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                body = json.loads(raw)
            except ValueError:
                body = {"error": {"message": raw.decode(errors="replace")[:2000]}}
            return None, validation_failure(body, prompt, e.code)
        if resp.get("node_errors"):
            # accepted with some outputs dropped for bad inputs: run nothing half-way
            self.cancel(resp["prompt_id"])
            return None, validation_failure(resp, prompt, 200)
        return resp["prompt_id"], None

    def history(self, prompt_id: str) -> Optional[dict]:
        h = self.request("GET", "/history/" + urllib.parse.quote(prompt_id, safe=""))
        return (h or {}).get(prompt_id)

    def queue_position(self, prompt_id: str) -> Optional[int]:
        """0 running, N waiting behind N-1 others, None when not in the queue."""
        q = self.request("GET", "/queue")
        if any(item[1] == prompt_id for item in q.get("queue_running", [])):
            return 0
        pending = sorted(q.get("queue_pending", []), key=lambda item: item[0])
        for i, item in enumerate(pending):
            if item[1] == prompt_id:
                return i + 1 + len(q.get("queue_running", []))
        return None

    def cancel(self, prompt_id: str) -> None:
        """Best effort: take *prompt_id* off the queue, interrupt it if it runs."""
        for path, data in (("/queue", {"delete": [prompt_id]}), ("/interrupt", {"prompt_id": prompt_id})):
            try:
                self.request("POST", path, data, timeout=10)
            except (urllib.error.URLError, OSError, ValueError):
                pass


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


# ---------------------------------------------------------------------------------------------
# Following one prompt

class Progress:
    """One status line: rewritten in place on a terminal, printed only on node changes otherwise."""

    def __init__(self, stream=None):
        self.stream = stream = stream or sys.stderr
        self.tty = stream.isatty()
        self.last = ""

    def show(self, text: str, important: bool = False) -> None:
        if self.tty:
            self.stream.write("\r\033[K" + text[:150])
            self.stream.flush()
        elif important and text != self.last:
            self.stream.write(text + "\n")
            self.stream.flush()
        self.last = text

    def clear(self) -> None:
        if self.tty and self.last:
            self.stream.write("\r\033[K")
            self.stream.flush()
        self.last = ""


def follow(comfy: Comfy, prompt_id: str, prompt: dict, tag: str, timeout: float,
           progress: Progress) -> Tuple[Optional[dict], str]:
    """Wait for *prompt_id* to finish. Returns (history entry or None, how it ended)."""
    deadline = time.monotonic() + timeout
    done_at: Optional[float] = None
    next_poll = 0.0
    while True:
        now = time.monotonic()
        if now > deadline:
            comfy.cancel(prompt_id)
            return None, f"timed out after {timeout:g}s (cancelled)"
        if comfy.ws is not None:
            try:
                msg = comfy.ws.recv(timeout=min(1.0, max(0.05, deadline - now)))
            except (OSError, WebSocketClosed, ServerError) as e:
                print(f"\nnote: websocket lost ({e}); polling /history", file=sys.stderr)
                comfy.ws = None
                msg = None
            if msg and msg[0] == 1:
                try:
                    ev = json.loads(msg[1])
                except ValueError:
                    ev = {}
                data = ev.get("data") or {}
                if isinstance(data, dict) and data.get("prompt_id") == prompt_id:
                    kind = ev.get("type")
                    node = data.get("node")
                    if kind == "execution_start":
                        progress.show(f"{tag} started", important=True)
                    elif kind == "executing" and node is None:
                        done_at = done_at or time.monotonic()
                    elif kind == "executing":
                        progress.show(f"{tag} node {node_label(prompt, str(node))}", important=True)
                    elif kind == "progress":
                        progress.show(f"{tag} node {node_label(prompt, str(node))} "
                                      f"{data.get('value')}/{data.get('max')}")
                    elif kind in ("execution_success", "execution_error", "execution_interrupted"):
                        done_at = done_at or time.monotonic()
        else:
            time.sleep(min(0.5, max(0.0, deadline - now)))
        if time.monotonic() >= next_poll or done_at is not None:
            # /history is the record; poll it rarely while the websocket reports progress
            next_poll = time.monotonic() + (5.0 if comfy.ws is not None and done_at is None else 0.5)
            try:
                entry = comfy.history(prompt_id)
            except (urllib.error.URLError, OSError, ValueError) as e:
                entry = None
                progress.show(f"{tag} (server not answering: {getattr(e, 'reason', e)})", important=True)
            if entry is not None:  # ComfyUI records a prompt in /history when it has finished
                return entry, "done"
            if done_at is not None and time.monotonic() - done_at > HISTORY_GRACE:
                return None, ("left the queue without a /history record (deleted from the queue, "
                              "or the server restarted)")
            if comfy.ws is None and done_at is None:
                try:
                    pos = comfy.queue_position(prompt_id)
                except (urllib.error.URLError, OSError, ValueError):
                    pos = -1
                if pos is None:
                    # neither queued nor running nor in history (yet): give history a moment
                    done_at = time.monotonic()
                elif pos > 0:
                    progress.show(f"{tag} queued ({pos - 1} ahead)", important=True)
                elif pos == 0:
                    progress.show(f"{tag} running", important=True)


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
# Main

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="motionkit_queue.py",
        description="Queue an API-format ComfyUI workflow with inputs varied over a batch, follow each "
                    "prompt and report where its outputs were written.",
        epilog="VALUE forms: 7 | 1..8 | 0..1..0.25 | 5,7.5,9 (\\, = literal comma) | @file (one per line). "
               "Values are typed like the workflow's current value of that input.")
    p.add_argument("workflow", help="API-format workflow JSON (ComfyUI: Workflow > Export (API))")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="NODE.INPUT=VALUE",
                   help="set a node input; NODE is the node id or its unique title")
    p.add_argument("--zip", action="store_true",
                   help="pair the --set lists element by element instead of taking every combination")
    p.add_argument("--server", default=None,
                   help=f"ComfyUI URL (default {DEFAULT_SERVER}; only http/https)")
    p.add_argument("--dry-run", action="store_true", help="print the prompts that would be queued; send nothing")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, metavar="S",
                   help=f"seconds to wait for each prompt, queue time included (default {DEFAULT_TIMEOUT:g}); "
                        "a prompt past it is cancelled and counts as failed")
    p.add_argument("--max-prompts", type=int, default=DEFAULT_MAX_PROMPTS, metavar="N",
                   help=f"refuse batches larger than this (default {DEFAULT_MAX_PROMPTS})")
    p.add_argument("--poll", action="store_true",
                   help="follow prompts by polling /history instead of the /ws websocket "
                        "(for proxies that do not pass websockets)")
    p.add_argument("--no-wait", action="store_true",
                   help="queue every prompt and exit without following them")
    p.add_argument("--report", metavar="FILE", help="also write the results as JSON to FILE")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except ServerError as e:
        print(f"error: {e}", file=sys.stderr)
        return 3


def run(args: argparse.Namespace) -> int:
    if args.timeout <= 0:
        raise UsageError("--timeout must be positive")
    if args.max_prompts < 1:
        raise UsageError("--max-prompts must be at least 1")
    workflow = load_workflow(args.workflow)
    assignments = [parse_assignment(s, workflow, args.max_prompts) for s in args.sets]
    seen: Dict[str, str] = {}
    for a in assignments:
        if a.key in seen:
            raise UsageError(f"--set {a.spec!r} and --set {seen[a.key]!r} set the same input")
        seen[a.key] = a.spec
    combos = expand(assignments, args.zip, args.max_prompts)
    n = len(combos)
    url = check_server_url(args.server if args.server is not None else DEFAULT_SERVER,
                           explicit=args.server is not None)

    if args.dry_run:
        print(f"{n} prompt{'s' if n != 1 else ''} (dry run; nothing sent to "
              f"{urllib.parse.urlunsplit(url)}):")
        for i, combo in enumerate(combos, 1):
            print(f"[{i}/{n}] {describe(combo)}")
        return 0

    comfy = Comfy(url)
    comfy.check()
    if not args.no_wait and not args.poll:
        comfy.connect_ws()
    progress = Progress()
    results: List[dict] = []
    pending_ids: List[str] = []
    try:
        for i, combo in enumerate(combos, 1):
            tag = f"[{i}/{n}]"
            prompt = build_prompt(workflow, combo)
            res: Dict[str, Any] = {"index": i, "set": {a.key: v for a, v in combo}, "prompt_id": None,
                                   "ok": False, "outputs": [], "failure": None}
            results.append(res)
            t0 = time.monotonic()
            prompt_id = str(uuid.uuid4())
            pending_ids.append(prompt_id)  # cancelled on Ctrl-C from here on, even mid-POST
            accepted, failure = comfy.submit(prompt, prompt_id)
            res["prompt_id"] = accepted
            if failure or args.no_wait:
                pending_ids.remove(prompt_id)
            if failure:
                res["failure"] = failure
                _print_result(res, prompt, describe(combo), tag)
                continue
            if args.no_wait:
                res["ok"] = None
                print(f"{tag} queued {prompt_id}  {describe(combo)}")
                continue
            entry, how = follow(comfy, prompt_id, prompt, tag, args.timeout, progress)
            pending_ids.remove(prompt_id)
            progress.clear()
            res["seconds"] = round(time.monotonic() - t0, 2)
            res["failure"] = execution_failure(entry, how)
            res["outputs"] = outputs_of(entry) if entry else []
            res["ok"] = res["failure"] is None
            _print_result(res, prompt, describe(combo), tag)
    except KeyboardInterrupt:
        progress.clear()
        for pid in pending_ids:
            comfy.cancel(pid)
        print(f"\ninterrupted: cancelled {len(pending_ids)} prompt(s) of this batch", file=sys.stderr)
        _write_report(args.report, results)
        return 130
    finally:
        if comfy.ws is not None:
            comfy.ws.close()

    _write_report(args.report, results)
    if args.no_wait:
        queued = sum(1 for r in results if r["prompt_id"])
        failed = n - queued
        print(f"summary: {queued} queued, {failed} refused")
        return 1 if failed else 0
    ok = sum(1 for r in results if r["ok"])
    failed = [r for r in results if not r["ok"]]
    print(f"summary: {n} prompt{'s' if n != 1 else ''}: {ok} succeeded, {len(failed)} failed")
    for r in failed:
        f = r["failure"] or {}
        where = f" in node {f['node_id']} ({f['node_type']})" if f.get("node_id") else ""
        print(f"  [{r['index']}/{n}] failed{where}: {f.get('message')}")
    return 1 if failed else 0


def _print_result(res: dict, prompt: dict, desc: str, tag: str) -> None:
    if res["ok"]:
        secs = f" in {res['seconds']:.1f}s" if "seconds" in res else ""
        print(f"{tag} ok{secs}  {desc}  (prompt {res['prompt_id']})")
        if not res["outputs"]:
            print("      no files written (the workflow has no saving node, or it was all cached)")
        for f in res["outputs"]:
            print(f"      node {node_label(prompt, f['node_id'])}: {file_path(f)}")
    else:
        f = res["failure"] or {}
        stage = "refused" if f.get("stage") == "validation" else "FAILED"
        where = f" in node {node_label(prompt, str(f['node_id']))}" if f.get("node_id") else ""
        etype = f"{f['exception_type']}: " if f.get("exception_type") else ""
        print(f"{tag} {stage}{where}  {desc}")
        print(f"      {etype}{f.get('message')}")


def _write_report(path: Optional[str], results: List[dict]) -> None:
    if not path:
        return
    with open(path, "w", encoding="utf-8") as f:
        json.dump({"prompts": results}, f, indent=1)


if __name__ == "__main__":
    sys.exit(main())
