// MotionKit: "Convert AnimateDiff-Evolved workflow" (menu Extensions > MotionKit, and the command palette).
// Sends the open graph to the pack's server route /motionkit/ade_import, which rewrites ADE's nodes as MotionKit's
// (ade_import/ in the pack; the same converter as `python motionkit_ade_import.py`), opens the result as a new
// workflow tab "<name>_motionkit" and shows the report: every node not converted (kept as it was) and why, and
// every setting not carried over. The open workflow itself is not changed.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

const EXT = "MotionKit.AdeImport";
const COMMAND = "MotionKit.ConvertAdeWorkflow";
const ROUTE = "/motionkit/ade_import";

function escapeHtml(text) {
  return String(text).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" }[c]));
}

function notify(severity, summary, detail) {
  const toast = app.extensionManager?.toast;
  if (toast?.add) toast.add({ severity, summary, detail, life: severity === "error" ? 0 : 8000 });
  else if (severity === "error") alert(`${summary}\n\n${detail}`);
}

function showReport(title, text) {
  const html = `<h3 style="margin:0 0 8px">${escapeHtml(title)}</h3>` +
    `<pre style="white-space:pre-wrap;max-height:60vh;overflow:auto;font-size:12px;margin:0">${escapeHtml(text)}</pre>`;
  if (app.ui?.dialog?.show) app.ui.dialog.show(html);
  else alert(`${title}\n\n${text}`);
}

function currentName() {
  const wf = app.extensionManager?.workflow?.activeWorkflow;
  const name = wf?.filename || wf?.path?.split("/").pop()?.replace(/\.json$/i, "");
  return name || "workflow";
}

export async function convertAdeWorkflow() {
  const workflow = app.graph.serialize();
  let reply;
  try {
    const resp = await api.fetchApi(ROUTE, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ workflow }),
    });
    reply = await resp.json();
    if (!resp.ok) throw new Error(reply?.error || `HTTP ${resp.status}`);
  } catch (e) {
    notify("error", "MotionKit: could not convert this workflow", e.message || String(e));
    return null;
  }
  const name = `${currentName()}_motionkit`;
  await app.loadGraphData(reply.workflow, true, true, name);
  const kept = reply.kept ? `, ${reply.kept} node(s) kept as they were` : "";
  showReport(`Converted to MotionKit: ${name}${kept}`, reply.report_text);
  return reply;
}

app.registerExtension({
  name: EXT,
  commands: [{
    id: COMMAND,
    label: "MotionKit: convert AnimateDiff-Evolved workflow",
    icon: "pi pi-sync",
    function: convertAdeWorkflow,
  }],
  menuCommands: [{ path: ["Extensions", "MotionKit"], commands: [COMMAND] }],
});
