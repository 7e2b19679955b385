"""The server side of the frontend's "MotionKit: convert AnimateDiff-Evolved workflow" command:
POST /motionkit/ade_import {"workflow": <UI workflow>} -> {"workflow": <MotionKit workflow>, "report": [...],
"report_text": "..."}, or 400 {"error": "..."} for input that is not a UI workflow. Converts against the live
registry (so a MotionKit node added since motionkit_nodes.json was generated is used)."""
import json
import sys

from ..ade_import import AdeImportError, convert_workflow, parse_workflow, registry_specs

ROUTE = "/motionkit/ade_import"


def convert_request(body) -> tuple[int, dict]:
    """(HTTP status, JSON reply) for a request body; no aiohttp needed (the tests call this)."""
    from . import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS  # the registry, complete once the pack loaded
    try:
        if not isinstance(body, dict) or "workflow" not in body:
            raise AdeImportError("the request needs {\"workflow\": <the UI workflow>}.")
        workflow = parse_workflow(body["workflow"], "the current graph")
    except AdeImportError as e:
        return 400, {"error": str(e)}
    converted, report = convert_workflow(workflow, registry_specs(NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS))
    return 200, {"workflow": converted, "report": report.as_list(), "report_text": report.text(),
                 "kept": len(report.kept)}


def register() -> bool:
    """Add the route to ComfyUI's server; False where no server runs (tests, scripts). ComfyUI imports `server`
    and makes its PromptServer before it loads custom nodes, and adds the routes after."""
    server = sys.modules.get("server")
    instance = getattr(getattr(server, "PromptServer", None), "instance", None)
    if instance is None:
        return False
    from aiohttp import web

    @instance.routes.post(ROUTE)
    async def ade_import(request):
        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError):
            return web.json_response({"error": "the request body is not JSON."}, status=400)
        status, reply = convert_request(body)
        return web.Response(status=status, text=json.dumps(reply, ensure_ascii=False),
                            content_type="application/json")

    return True


register()
