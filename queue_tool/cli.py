"""The command line: ``python motionkit_queue.py`` / ``python -m queue_tool``."""
from __future__ import annotations

import argparse
import asyncio
import os
import sys
import urllib.parse
from typing import Any, Dict, List, Optional, Sequence

from .batch import (DEFAULT_MAX_PROMPTS, DEFAULT_SERVER, ServerError, UsageError, build_prompt,
                    check_server_url, describe, expand, load_workflow, node_label, parse_assignment, server_key)
from .client import NET_ERRORS, HTTPStatusError, Server, file_path
from .manifest import DONE, Manifest, workflow_digest
from .sweep import Job, Progress, Sweep, inputs_json, json_safe

DEFAULT_TIMEOUT = 3600.0     # one prompt, queue time included
DEFAULT_RETRIES = 2


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="motionkit_queue.py",
        description="Queue an API-format ComfyUI workflow with inputs varied over a batch, spread over one or "
                    "more ComfyUI servers, follow each prompt and report where its outputs were written.",
        epilog="VALUE forms: 7 | 1..8 | 0..1..0.25 | 5,7.5,9 (\\, = literal comma) | @file (one per line). "
               "Values are typed like the workflow's current value of that input.")
    p.add_argument("workflow", nargs="?", help="API-format workflow JSON (ComfyUI: Workflow > Export (API))")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="NODE.INPUT=VALUE",
                   help="set a node input; NODE is the node id or its unique title")
    p.add_argument("--zip", action="store_true",
                   help="pair the --set lists element by element instead of taking every combination")
    p.add_argument("--server", dest="servers", action="append", default=[], metavar="URL",
                   help=f"ComfyUI URL (default {DEFAULT_SERVER}; only http/https). Repeat it to spread the "
                        "batch over several servers: each prompt goes to the least busy one, and a prompt "
                        "whose server dies is queued again on another")
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
    p.add_argument("--manifest", metavar="FILE.json",
                   help="keep the sweep's manifest in FILE.json and FILE.csv (prompt id, inputs, server, status, "
                        "output files, seconds per prompt), updated as prompts finish; see --resume")
    p.add_argument("--resume", metavar="MANIFEST",
                   help="continue the sweep of this manifest: prompts that succeeded are not run again; "
                        "the workflow and --set come from the manifest (give only --server and options)")
    p.add_argument("--retries", type=int, default=DEFAULT_RETRIES, metavar="N",
                   help=f"times a prompt whose server died is queued again on another (default {DEFAULT_RETRIES})")
    p.add_argument("--per-server", type=int, default=1, metavar="N",
                   help="prompts of this batch queued on one server at a time (default 1: the rest wait here "
                        "and go to whichever server is free first)")
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


def _batch(args: argparse.Namespace):
    """(workflow path, workflow, set specs, zip, base dir for @files, previous manifest or None)."""
    if args.resume:
        if args.workflow or args.sets or args.zip:
            raise UsageError("--resume takes the workflow and the --set values from the manifest; give only "
                             "--server and options")
        prev = Manifest.load(args.resume)
        path = prev.data["workflow"]
        workflow = load_workflow(path)
        if workflow_digest(workflow) != prev.data.get("workflow_sha256"):
            raise UsageError(f"{path} changed since the manifest {args.resume} was written: resuming would mix "
                             "two workflows. Start a new sweep with --manifest.")
        return path, workflow, list(prev.data["sets"]), bool(prev.data["zip"]), prev.data.get("cwd", "."), prev
    if not args.workflow:
        raise UsageError("give an API-format workflow (or --resume MANIFEST)")
    return args.workflow, load_workflow(args.workflow), list(args.sets), args.zip, os.getcwd(), None


def run(args: argparse.Namespace) -> int:
    if args.timeout <= 0:
        raise UsageError("--timeout must be positive")
    if args.max_prompts < 1:
        raise UsageError("--max-prompts must be at least 1")
    if args.retries < 0 or args.per_server < 1:
        raise UsageError("--retries must be 0 or more and --per-server at least 1")
    wf_path, workflow, sets, zip_, base_dir, prev = _batch(args)
    assignments = [parse_assignment(s, workflow, args.max_prompts, base_dir) for s in sets]
    seen: Dict[str, str] = {}
    for a in assignments:
        if a.key in seen:
            raise UsageError(f"--set {a.spec!r} and --set {seen[a.key]!r} set the same input")
        seen[a.key] = a.spec
    combos = expand(assignments, zip_, args.max_prompts)
    n = len(combos)
    if args.servers:
        urls = [check_server_url(u, explicit=True) for u in args.servers]
    else:
        urls = [check_server_url(DEFAULT_SERVER, explicit=False)]
    if len({server_key(u) for u in urls}) != len(urls):
        raise UsageError("the same --server is given twice (localhost, 127.0.0.1 and ::1 are one server)")

    manifest = None
    manifest_path = args.manifest or args.resume
    if manifest_path and not args.dry_run:
        manifest = Manifest(manifest_path, wf_path, workflow, sets, zip_)
        manifest.data["cwd"] = base_dir
        manifest.start([json_safe(inputs_json(c)) for c in combos], prev)
    done_before = {}
    for r in (prev.rows if prev else []):
        i = r.get("index")
        if isinstance(i, int) and 1 <= i <= n and r.get("status") == DONE \
                and r.get("inputs") == json_safe(inputs_json(combos[i - 1])):
            done_before[i] = r

    if args.dry_run:
        todo = [i for i in range(1, n + 1) if i not in done_before]
        where = ", ".join(urllib.parse.urlunsplit(u) for u in urls)
        extra = f"; {len(done_before)} already done" if done_before else ""
        print(f"{len(todo)} prompt{'s' if len(todo) != 1 else ''} (dry run; nothing sent to {where}{extra}):")
        for i in todo:
            print(f"[{i}/{n}] {describe(combos[i - 1])}")
        return 0

    progress = Progress()
    several = len(urls) > 1
    results: List[dict] = []
    jobs: List[Job] = []
    for i, combo in enumerate(combos, 1):
        res: Dict[str, Any] = {"index": i, "set": inputs_json(combo), "prompt_id": None,
                               "ok": False, "outputs": [], "failure": None}
        results.append(res)
        if i in done_before:
            r = done_before[i]
            res.update(ok=True, prompt_id=r.get("prompt_id"), server=r.get("server"), earlier=True,
                       seconds=r.get("seconds"))
            continue
        jobs.append(Job(index=i, prompt=build_prompt(workflow, combo), desc=describe(combo),
                        inputs=inputs_json(combo), tag=f"[{i}/{n}]", res=res))
    if done_before:
        print(f"resuming {manifest_path}: {len(done_before)} of {n} prompts already succeeded, "
              f"{len(jobs)} to run", file=sys.stderr)

    def print_result(job: Job) -> None:
        progress.clear()
        _print_result(job.res, job.prompt, job.desc, job.tag, several)

    state = {"sweep": None, "cancelled": 0}
    try:
        asyncio.run(_run_async(args, urls, jobs, prev, progress, manifest, print_result, state, results))
    except KeyboardInterrupt:
        progress.clear()
        print(f"\ninterrupted: cancelled {state['cancelled']} prompt(s) of this batch", file=sys.stderr)
        _write_report(args.report, results)
        return 130

    _write_report(args.report, results)
    if args.no_wait:
        queued = sum(1 for j in jobs if j.res["prompt_id"])
        failed = len(jobs) - queued
        print(f"summary: {queued} queued, {failed} refused")
        return 1 if failed else 0
    ok = sum(1 for r in results if r["ok"])
    failed = [r for r in results if not r["ok"]]
    earlier = f" ({len(done_before)} in the earlier run)" if done_before else ""
    print(f"summary: {n} prompt{'s' if n != 1 else ''}: {ok} succeeded{earlier}, {len(failed)} failed")
    for r in failed:
        f = r["failure"] or {}
        where = f" in node {f['node_id']} ({f['node_type']})" if f.get("node_id") else ""
        print(f"  [{r['index']}/{n}] failed{where}: {f.get('message')}")
    return 1 if failed else 0


async def _run_async(args, urls, jobs: List[Job], prev: Optional[Manifest], progress: Progress, manifest,
                     print_result, state: dict, results: List[dict]) -> None:
    import aiohttp
    async with aiohttp.ClientSession() as session:
        servers = [Server(u, session) for u in urls]
        checks = await asyncio.gather(*(s.check() for s in servers), return_exceptions=True)
        down = [(s, c) for s, c in zip(servers, checks) if isinstance(c, BaseException)]
        for s, c in down:
            s.alive = False
        if len(down) == len(servers):
            s, c = down[0]
            reason = getattr(c, "strerror", None) or c or type(c).__name__
            raise ServerError(f"no ComfyUI answering at {', '.join(x.base for x in servers)} ({reason}). "
                              "Start ComfyUI, or pass --server http://HOST:PORT")
        for s, c in down:
            print(f"note: no ComfyUI answering at {s.base} ({c or type(c).__name__}); "
                  "using the other servers", file=sys.stderr)
        live = [s for s in servers if s.alive]
        try:
            if not args.no_wait and not args.poll:
                for s in live:
                    why = await s.connect_ws()
                    if why:
                        print(f"note: no websocket at {s.base}/ws ({why}); following progress by polling "
                              "/history", file=sys.stderr)
            if args.no_wait:
                await _queue_only(servers, jobs, manifest, len(urls) > 1)
                return
            leftovers = await _adopt_earlier(servers, jobs, prev, manifest, print_result)
            sweep = Sweep(servers, leftovers, timeout=args.timeout, retries=args.retries,
                          per_server=args.per_server, progress=progress, manifest=manifest,
                          print_result=print_result)
            state["sweep"] = sweep
            try:
                await sweep.run()
            except asyncio.CancelledError:
                state["cancelled"] = len(sweep.inflight)
                raise
        finally:
            for s in servers:
                await s.close()


async def _queue_only(servers: List[Server], jobs: List[Job], manifest, several: bool) -> None:
    """--no-wait: queue everything at once, each prompt on the server with the shortest queue so far."""
    import uuid
    live = [s for s in servers if s.alive]
    loads = await asyncio.gather(*(s.queue_remaining() for s in live), return_exceptions=True)
    load = {s.label: (0 if isinstance(x, BaseException) else x) for s, x in zip(live, loads)}
    for job in jobs:
        srv = min(live, key=lambda s: (load[s.label], live.index(s)))
        prompt_id = str(uuid.uuid4())
        try:
            accepted, failure = await srv.submit(job.prompt, prompt_id)
        except NET_ERRORS as e:
            accepted, failure = None, {"stage": "submit", "node_id": None, "node_type": None,
                                       "exception_type": type(e).__name__, "message": str(e)}
        job.res.update(prompt_id=accepted, server=srv.label)
        if manifest is not None:
            manifest.update(job.index, prompt_id=accepted, server=srv.label,
                            status="queued" if accepted else "refused",
                            error=(failure or {}).get("message"), attempts=1)
        if failure:
            job.res["failure"] = failure
            _print_result(job.res, job.prompt, job.desc, job.tag, several)
            continue
        load[srv.label] += 1
        job.res["ok"] = None
        on = f" on {srv.label}" if several else ""
        print(f"{job.tag} queued {prompt_id}{on}  {job.desc}")


async def _adopt_earlier(servers: List[Server], jobs: List[Job], prev: Optional[Manifest], manifest,
                         print_result) -> List[Job]:
    """--resume: a prompt the interrupted run had queued is looked up on its server first; one that finished
    there is recorded, not run again. Returns the jobs still to run."""
    if prev is None:
        return jobs
    from .client import execution_failure, outputs_of
    live = [s for s in servers if s.alive]

    def server_of(label: str):
        """The live server the manifest's label (host:port as typed then) names, however it is typed now."""
        for s in live:
            try:
                if label and server_key(urllib.parse.urlsplit(f"{s.url.scheme}://{label}{s.url.path}")) == s.key:
                    return s
            except ValueError:  # a hand-edited manifest
                return None
        return None

    old = {r["index"]: r for r in prev.rows}
    todo = []
    for job in jobs:
        r = old.get(job.index) or {}
        srv, pid = server_of(r.get("server") or ""), r.get("prompt_id")
        if r.get("status") in ("queued", "running") and srv is not None and pid:
            try:
                entry = await srv.history(pid)
                queued = entry is None and await srv.queue_position(pid) is not None
            except NET_ERRORS + (HTTPStatusError,):
                entry, queued = None, False
            if queued:
                job.adopt = (srv, pid)  # still queued or running there: follow it, do not run it twice
                job.attempts = max(0, int(r.get("attempts") or 1) - 1)
            elif entry is not None:
                job.res.update(prompt_id=pid, server=srv.label, failure=execution_failure(entry, "done"),
                               outputs=outputs_of(entry))
                job.res["ok"] = job.res["failure"] is None
                if manifest is not None:
                    manifest.update(job.index, status="success" if job.res["ok"] else "failed",
                                    outputs=[file_path(f) for f in job.res["outputs"]],
                                    error=(job.res["failure"] or {}).get("message"))
                print_result(job)
                continue
        todo.append(job)
    return todo


def _print_result(res: dict, prompt: dict, desc: str, tag: str, several: bool = False) -> None:
    on = f" on {res['server']}" if several and res.get("server") else ""
    if res["ok"]:
        secs = f" in {res['seconds']:.1f}s" if res.get("seconds") is not None else ""
        print(f"{tag} ok{secs}  {desc}  (prompt {res['prompt_id']}{on})")
        if not res["outputs"]:
            print("      no files written (the workflow has no saving node, or it was all cached)")
        for f in res["outputs"]:
            print(f"      node {node_label(prompt, f['node_id'])}: {file_path(f)}")
    else:
        f = res["failure"] or {}
        stage = "refused" if f.get("stage") == "validation" else "FAILED"
        where = f" in node {node_label(prompt, str(f['node_id']))}" if f.get("node_id") else ""
        etype = f"{f['exception_type']}: " if f.get("exception_type") else ""
        print(f"{tag} {stage}{where}{on}  {desc}")
        print(f"      {etype}{f.get('message')}")
    sys.stdout.flush()


def _write_report(path: Optional[str], results: List[dict]) -> None:
    if not path:
        return
    import json
    with open(path, "w", encoding="utf-8") as f:
        json.dump({"prompts": results}, f, indent=1)
