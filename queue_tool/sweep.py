"""Running a batch over one or more servers: each prompt goes to the least busy live server, is followed
over that server's /ws (or by polling /history), and is queued again on another server when its server
dies. Results are printed as prompts finish and kept in the manifest."""
from __future__ import annotations

import asyncio
import collections
import json
import sys
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from .batch import node_label
from .client import (NET_ERRORS, HTTPStatusError, Server, ServerDead, execution_failure, file_path,
                     outputs_of)

HISTORY_GRACE = 15.0         # after "done", how long /history may lag behind


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


@dataclass
class Job:
    index: int
    prompt: dict
    desc: str
    inputs: Dict[str, Any]
    tag: str
    res: Dict[str, Any]
    attempts: int = 0
    tried: List[str] = field(default_factory=list)
    adopt: Optional[Tuple[Server, str]] = None  # (server, prompt id) queued there by an interrupted run


async def follow(srv: Server, queue: asyncio.Queue, prompt_id: str, prompt: dict, tag: str, timeout: float,
                 progress: Progress, on_running: Callable[[], None],
                 events: bool = True) -> Tuple[Optional[dict], str]:
    """Wait for *prompt_id* to finish on *srv*. Returns (history entry or None, how it ended); raises
    ServerDead when the server stops answering."""
    deadline = time.monotonic() + timeout
    done_at: Optional[float] = None
    next_poll = 0.0
    started = False
    while True:
        now = time.monotonic()
        if now > deadline:
            await srv.cancel(prompt_id)
            return None, f"timed out after {timeout:g}s (cancelled)"
        if srv.ws is not None or not queue.empty():
            try:
                ev = await asyncio.wait_for(queue.get(), timeout=min(1.0, max(0.05, deadline - now)))
            except asyncio.TimeoutError:
                ev = None
            if ev is not None:
                kind, data = ev.get("type"), ev.get("data") or {}
                node = data.get("node")
                if kind == "_ws_lost":
                    print(f"\nnote: websocket to {srv.label} lost ({data.get('why')}); polling /history",
                          file=sys.stderr)
                    next_poll = 0.0
                elif kind == "execution_start":
                    started = True
                    on_running()
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
            await asyncio.sleep(min(0.5, max(0.0, deadline - now)))
        if time.monotonic() >= next_poll or done_at is not None:
            # /history is the record; poll it rarely while the websocket reports progress
            # (a prompt adopted from an interrupted run sends its events to that run's client: poll it)
            slow = srv.ws is not None and events and done_at is None
            next_poll = time.monotonic() + (5.0 if slow else 1.0 if srv.ws is not None else 0.5)
            try:
                entry = await srv.history(prompt_id)
            except NET_ERRORS + (HTTPStatusError,) as e:
                if not await srv.answers():
                    raise ServerDead(f"{srv.label} stopped answering ({e or type(e).__name__})")
                entry = None
                progress.show(f"{tag} (server not answering: {e})", important=True)
            if entry is not None:  # ComfyUI records a prompt in /history when it has finished
                return entry, "done"
            if done_at is not None and time.monotonic() - done_at > HISTORY_GRACE:
                return None, ("left the queue without a /history record (deleted from the queue, "
                              "or the server restarted)")
            if srv.ws is None and done_at is None:
                try:
                    pos = await srv.queue_position(prompt_id)
                except NET_ERRORS + (HTTPStatusError,):
                    pos = -1
                if pos is None:
                    # neither queued nor running nor in history (yet): give history a moment
                    done_at = time.monotonic()
                elif pos > 0:
                    progress.show(f"{tag} queued ({pos - 1} ahead)", important=True)
                elif pos == 0:
                    if not started:
                        started = True
                        on_running()
                    progress.show(f"{tag} running", important=True)


class Sweep:
    """The batch's jobs over the servers. ``inflight`` maps prompt ids to their server while they are
    queued or running there (cancelled on Ctrl-C)."""

    def __init__(self, servers: Sequence[Server], jobs: Sequence[Job], *, timeout: float, retries: int,
                 per_server: int, progress: Progress, manifest=None, print_result=None):
        self.servers = list(servers)
        self.jobs = list(jobs)
        self.timeout, self.retries, self.per_server = timeout, retries, per_server
        self.progress, self.manifest = progress, manifest
        self.print_result = print_result or (lambda job: None)
        self.inflight: Dict[str, Server] = {}

    def _record(self, job: Job, **fields) -> None:
        if self.manifest is not None:
            self.manifest.update(job.index, **fields)

    async def pick(self, exclude: Sequence[str] = ()) -> Optional[Server]:
        """The least busy live server with room for one more of our prompts: fewest prompts in its queue
        (anyone's, GET /prompt), then fewest of ours. A server that does not answer is dropped."""
        while True:
            free = [s for s in self.servers if s.alive and s.ours < self.per_server]
            if not free:
                return None
            preferred = [s for s in free if s.label not in exclude] or free
            loads = await asyncio.gather(*(s.queue_remaining() for s in preferred), return_exceptions=True)
            ranked = []
            for i, (s, load) in enumerate(zip(preferred, loads)):
                if isinstance(load, BaseException):
                    if not await s.answers():
                        self.drop(s, f"not answering ({load or type(load).__name__})")
                        continue
                    load = 1 << 30  # answers, but not /prompt: last choice
                ranked.append((load, s.ours, i, s))
            if ranked:
                return min(ranked)[3]

    def drop(self, srv: Server, why: str) -> None:
        if srv.alive:
            srv.alive = False
            left = sum(s.alive for s in self.servers)
            print(f"note: server {srv.label} {why}; {left} server{'s' if left != 1 else ''} left",
                  file=sys.stderr)

    async def run_job(self, job: Job, srv: Server) -> None:
        """Submit *job* to *srv* and follow it to the end (ServerDead escapes: the caller requeues)."""
        res = job.res
        t0 = time.monotonic()
        adopted, job.adopt = job.adopt, None
        prompt_id = adopted[1] if adopted else str(uuid.uuid4())
        queue: asyncio.Queue = asyncio.Queue()
        srv.listeners[prompt_id] = queue  # before submitting: no event can be missed
        self.inflight[prompt_id] = srv
        job.tried.append(srv.label)
        try:
            try:
                if adopted:  # already on the server: follow it (its events went to the old client)
                    accepted, failure = prompt_id, None
                else:
                    accepted, failure = await srv.submit(job.prompt, prompt_id)
            except NET_ERRORS as e:
                if not await srv.answers():
                    raise ServerDead(f"{srv.label} stopped answering ({e or type(e).__name__})")
                raise
            res.update(prompt_id=accepted, server=srv.label)
            if failure:
                res["failure"] = failure
                self._record(job, prompt_id=None, server=srv.label, status="refused",
                             error=failure.get("message"), attempts=job.attempts + 1)
                self.print_result(job)
                return
            self._record(job, prompt_id=accepted, server=srv.label, status="queued", attempts=job.attempts + 1)
            entry, how = await follow(srv, queue, prompt_id, job.prompt, job.tag, self.timeout, self.progress,
                                      lambda: self._record(job, status="running"), events=not adopted)
        finally:
            srv.listeners.pop(prompt_id, None)
            self.inflight.pop(prompt_id, None)
        self.progress.clear()
        res["seconds"] = round(time.monotonic() - t0, 2)
        res["failure"] = execution_failure(entry, how)
        res["outputs"] = outputs_of(entry) if entry else []
        res["ok"] = res["failure"] is None
        self._record(job, status="success" if res["ok"] else "failed", seconds=res["seconds"],
                     outputs=[file_path(f) for f in res["outputs"]],
                     error=None if res["ok"] else (res["failure"] or {}).get("message"))
        self.print_result(job)

    async def run(self) -> None:
        pending = collections.deque(self.jobs)
        running: Dict[asyncio.Task, Tuple[Job, Server]] = {}
        try:
            while pending or running:
                while pending:
                    job = pending[0]
                    if job.adopt is not None and job.adopt[0].alive:
                        srv = job.adopt[0]
                    else:
                        job.adopt = None
                        srv = await self.pick(exclude=job.tried)
                    if srv is None:
                        break
                    pending.popleft()
                    srv.ours += 1
                    running[asyncio.ensure_future(self.run_job(job, srv))] = (job, srv)
                if not running:
                    for job in pending:  # no live server left for them
                        job.res["failure"] = {"stage": "execution", "node_id": None, "node_type": None,
                                              "exception_type": None,
                                              "message": "no server left to run it (all stopped answering)"}
                        self._record(job, status="failed", error=job.res["failure"]["message"])
                        self.print_result(job)
                    return
                done, _ = await asyncio.wait(list(running), return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    job, srv = running.pop(task)
                    srv.ours -= 1
                    err = task.exception()
                    if err is None:
                        continue
                    if not isinstance(err, ServerDead):
                        job.res["failure"] = {"stage": "execution", "node_id": None, "node_type": None,
                                              "exception_type": type(err).__name__,
                                              "message": f"talking to {srv.label}: {err}"}
                        self._record(job, status="failed", error=job.res["failure"]["message"])
                        self.print_result(job)
                        continue
                    self.drop(srv, f"stopped answering while running [{job.index}/{len(self.jobs)}]")
                    job.attempts += 1
                    if job.attempts <= self.retries and any(s.alive for s in self.servers):
                        print(f"{job.tag} retrying on another server (attempt {job.attempts + 1})",
                              file=sys.stderr)
                        self._record(job, status="retrying", error=str(err))
                        pending.appendleft(job)
                    else:
                        job.res["failure"] = {"stage": "execution", "node_id": None, "node_type": None,
                                              "exception_type": None, "message": str(err)}
                        job.res["server"] = srv.label
                        self._record(job, status="failed", error=str(err))
                        self.print_result(job)
        except asyncio.CancelledError:
            await self.cancel_all()
            raise
        finally:
            for task in running:
                task.cancel()

    async def cancel_all(self) -> int:
        items = list(self.inflight.items())
        await asyncio.gather(*(srv.cancel(pid) for pid, srv in items), return_exceptions=True)
        return len(items)


def inputs_json(combo) -> Dict[str, Any]:
    return {a.key: v for a, v in combo}


def json_safe(v: Any) -> Any:
    return json.loads(json.dumps(v))
