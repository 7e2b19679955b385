"""MotionKit's batch queue tool: one API-format workflow, inputs varied over a sweep, spread over one or
more ComfyUI servers (least busy first; a prompt whose server dies is queued again on another), with a
JSON/CSV manifest that an interrupted sweep resumes from.

Needs only the standard library and aiohttp (a ComfyUI dependency): no torch, no ComfyUI, no MotionKit
imports, so it runs on any machine that can reach the servers. Entry points: ``motionkit_queue.py`` in
the pack's folder, or ``python -m queue_tool``.

    batch.py     the workflow, --set parsing, the prompts of the sweep (pure)
    client.py    one server over aiohttp: HTTP routes, /ws events routed to their prompt
    sweep.py     dispatch over the servers, following each prompt, retries
    manifest.py  the JSON/CSV manifest and --resume
    cli.py       the command line
"""
from .batch import (DEFAULT_MAX_PROMPTS, DEFAULT_SERVER, Assignment, ServerError, UsageError, build_prompt,
                    check_server_url, describe, expand, load_workflow, node_label, parse_assignment,
                    parse_values, resolve_node, server_key, split_list)
from .client import (Server, ServerDead, WebSocket, WebSocketClosed, execution_failure, file_path,
                     outputs_of, validation_failure)
from .cli import DEFAULT_TIMEOUT, build_parser, main, run
from .manifest import Manifest

__all__ = ["DEFAULT_MAX_PROMPTS", "DEFAULT_SERVER", "DEFAULT_TIMEOUT", "Assignment", "Manifest", "Server",
           "ServerDead", "ServerError", "UsageError", "WebSocket", "WebSocketClosed", "build_parser",
           "build_prompt", "check_server_url", "describe", "execution_failure", "expand", "file_path",
           "load_workflow", "main", "node_label", "outputs_of", "parse_assignment", "parse_values",
           "resolve_node", "run", "server_key", "split_list", "validation_failure"]
