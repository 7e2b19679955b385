"""The batch: an API-format workflow, its --set assignments and the prompts they make (standard library
only; nothing here talks to a server)."""
from __future__ import annotations

import ipaddress
import itertools
import json
import os
import sys
import urllib.parse
from typing import Any, Dict, List, Sequence, Tuple

DEFAULT_SERVER = "http://127.0.0.1:8188"
DEFAULT_MAX_PROMPTS = 1000


class UsageError(Exception):
    """Bad arguments or workflow (exit 2)."""


class ServerError(Exception):
    """The server could not be reached or answered nonsense (exit 3)."""


# ---------------------------------------------------------------------------------------------
# Workflow loading

def read_json(path: str, what: str):
    """The JSON in `path`; a UsageError naming the file and `what` it should be when it cannot be read."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except OSError as e:
        raise UsageError(f"cannot read {what} {path}: {e.strerror or e}")
    except ValueError as e:
        raise UsageError(f"{path} is not a {what} (not JSON: {e})")


def load_workflow(path: str) -> Dict[str, dict]:
    data = read_json(path, "workflow")
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
    try:  # urlsplit and .port raise ValueError on e.g. "http://[::1", "http://host:99999", "http://host:abc"
        u = urllib.parse.urlsplit(url.strip())
        host, _ = u.hostname, u.port
    except ValueError as e:
        raise UsageError(f"--server {url!r} is not a valid URL ({e}); give http://HOST:PORT")
    if u.scheme not in ("http", "https"):
        raise UsageError(f"--server {url!r}: only http:// (or https://) ComfyUI URLs are accepted")
    if not host:
        raise UsageError(f"--server {url!r}: no host in the URL")
    if any(c.isspace() for c in u.netloc):
        raise UsageError(f"--server {url!r}: the host holds a space")
    if u.username or u.password or u.query or u.fragment:
        raise UsageError(f"--server {url!r}: give only scheme://host:port[/path]")
    if not explicit and not _is_loopback(host):
        raise UsageError("the default server must be on this machine")
    return u


DEFAULT_PORTS = {"http": 80, "https": 443}


def server_key(url: urllib.parse.SplitResult) -> str:
    """One server however its URL is spelled: host case and trailing dot, default port, trailing slash, IPv6
    notation; every loopback name (localhost, 127.x.x.x, ::1) is this machine. --resume finds a prompt's server by
    this key, so `localhost` and `127.0.0.1` do not run an in-flight prompt a second time."""
    host = (url.hostname or "").lower().rstrip(".")
    if _is_loopback(host):
        host = "loopback"
    else:
        try:
            ip = ipaddress.ip_address(host)
            host = str(getattr(ip, "ipv4_mapped", None) or ip)
        except ValueError:
            pass
    return f"{url.scheme}://{host}:{url.port or DEFAULT_PORTS.get(url.scheme, 0)}{url.path.rstrip('/')}"


def _is_loopback(host: str) -> bool:
    host = host.lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    return ip.is_loopback or bool(getattr(ip, "ipv4_mapped", None) and ip.ipv4_mapped.is_loopback)
