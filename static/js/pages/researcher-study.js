// researcher-study.js: one study for its researchers: the transitions they may fire
// (with comments), the workflow diagram with the current state marked,
// builds and previews with live stage-by-stage progress from the server's
// event stream (each stage's outcome and log tail; a failed build says
// which stage failed), cancel and history; the details, runner pin and
// protocol (checked as typed); the study log.  All through the JSON:API.
import { ApiError, get, notice, onSubmit, patch, request, showErrors } from "/js/api.js";
import { checkProtocol } from "/js/protocol.js";
import { el, fillRows, message, pagedList, pathId, setupResearch, when } from "/js/research.js";
import { housekeeping } from "/js/housekeeping.js";

const account = await setupResearch();
const id = pathId("studies");
const done = document.getElementById("done");
const say = (text, kind = "success") => notice(done, text, kind);
let study;

const TEXT_FIELDS = ["name", "short_description", "purpose", "criteria", "duration", "contact_info", "exit_url"];

async function showStudy() {
  study = (await get(`/api/v1/researcher/studies/${id}/`)).data;
  const a = study.attributes;
  document.getElementById("title").textContent = a.name;
  document.title = `${a.name} – studyhub`;
  document.getElementById("state").textContent = a.state;
  const labId = study.relationships.lab.data.id;
  document.getElementById("lab-line").replaceChildren("Lab: ",
    el("a", { href: `/researcher/labs/${labId}/` }, "the study's lab"), ".");
  document.getElementById("data-link").href = `/researcher/studies/${id}/data/`;
  const meta = a.metadata || {};
  const dl = document.getElementById("runner");
  dl.replaceChildren(
    el("dt", {}, "Runner repository"), el("dd", {}, meta.player_repo_url || "the site's default runner"),
    el("dt", {}, "Runner commit"), el("dd", {}, meta.last_known_player_sha || "the newest"),
    el("dt", {}, "Built"), el("dd", {}, a.built ? "yes" : "not yet"));
  // The form keeps what the researcher is typing: filled once.
  const form = document.getElementById("edit");
  if (!form.dataset.filled) {
    for (const k of TEXT_FIELDS) form.elements[k].value = a[k] || "";
    form.elements.public.checked = !!a.public;
    form.elements.player_repo_url.value = meta.player_repo_url || "";
    form.elements.last_known_player_sha.value = meta.last_known_player_sha || "";
    form.elements.structure.value = JSON.stringify(a.structure || {}, null, 2);
    form.dataset.filled = "1";
    checkNow();
  }
}

// ---- workflow
async function showWorkflow() {
  const wf = (await get(`/api/v1/workflow/?study=${id}`)).data.attributes;
  const box = document.getElementById("triggers");
  box.replaceChildren();
  const next = (wf.study && wf.study.next) || [];
  const guards = document.getElementById("guards");
  guards.replaceChildren();
  // Only what the user may fire; one whose condition is not met yet is
  // shown disabled, with the reason beside it.
  for (const t of next.filter((n) => n.allowed)) {
    const label = `${t.trigger[0].toUpperCase()}${t.trigger.slice(1).replace(/_/g, " ")}`;
    const b = el("button", { type: "submit", value: t.trigger, disabled: !t.guard_ok }, label);
    box.append(b);
    if (!t.guard_ok) {
      const row = wf.transitions.find((x) => x.trigger === t.trigger && x.from === study.attributes.state);
      guards.append(el("li", {}, `${label}: ${(row && wf.guards[row.guard]) || "not possible yet"}.`));
    }
  }
  guards.hidden = guards.children.length === 0;
  document.getElementById("no-triggers").hidden = box.children.length > 0;
  const img = document.getElementById("diagram");
  img.src = `/api/v1/workflow/?format=svg&study=${id}&v=${encodeURIComponent(study.attributes.state)}`;
  img.alt = `The study workflow; this study is ${study.attributes.state}.`;
}

const transition = document.getElementById("transition");
transition.addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const trigger = ev.submitter && ev.submitter.value;
  if (!trigger) return;
  try {
    await request("POST", `/api/v1/studies/${id}/transitions/`,
      { trigger, comments: transition.elements.comments.value });
    transition.reset();
    await refresh();
    say(`Done: ${trigger}. The study is now ${study.attributes.state}.`);
  } catch (e) {
    showErrors(transition, e);
  }
});

// ---- protocol editor
const structure = document.getElementById("structure");
const check = document.getElementById("structure-check");
function checkNow() {
  const err = checkProtocol(structure.value);
  check.textContent = err ? `Line ${err.line}, column ${err.column}: ${err.message}` : "The protocol is valid JSON.";
  check.className = err ? "hint check-error" : "hint";
  structure.setAttribute("aria-invalid", err ? "true" : "false");
  return err;
}
structure.addEventListener("input", checkNow);

onSubmit(document.getElementById("edit"), async (v) => {
  const err = checkNow();
  if (err) throw [{ field: "structure", detail: `Line ${err.line}, column ${err.column}: ${err.message}` }];
  const attrs = {};
  for (const k of TEXT_FIELDS) attrs[k] = v[k] || "";
  attrs.public = !!v.public;
  attrs.structure = JSON.parse(structure.value);
  attrs.metadata = { ...(study.attributes.metadata || {}),
    player_repo_url: v.player_repo_url || "", last_known_player_sha: v.last_known_player_sha || "" };
  await patch(`/api/v1/researcher/studies/${id}/`, "studies", id, attrs);
  await refresh();
  say("Your changes are saved.");
});

document.getElementById("clone").addEventListener("click", async () => {
  try {
    const doc = await request("POST", `/api/v1/researcher/studies/${id}/clone/`);
    location.assign(`/researcher/studies/${doc.data.id}/`);
  } catch (e) {
    say(message(e), "error");
  }
});

// ---- builds
const live = document.getElementById("live");
let current = null;   // the build shown live: its id

/** The stage a failed build failed at: the first that did not succeed
 *  (the stages after it, such as finish, record the failure too). */
function firstFailed(a) {
  if (a.state !== "failed") return null;
  return a.stages.find((s) => s.outcome !== "succeeded" && s.outcome !== "running")
    || (a.stage ? { stage: a.stage } : null);
}

function drawBuild(b) {
  const a = b.attributes;
  current = b.id;
  live.hidden = false;
  document.getElementById("live-mode").textContent = a.mode === "preview" ? "(preview)" : "(experiment)";
  const ended = !["queued", "running"].includes(a.state);
  const failedAt = firstFailed(a);
  document.getElementById("live-state").textContent = failedAt
    ? `failed at the ${failedAt.stage} stage` : a.state;
  const err = document.getElementById("live-error");
  err.hidden = !a.error;
  err.textContent = a.error ? `Error: ${a.error}` : "";
  document.getElementById("cancel").hidden = ended;
  const ol = document.getElementById("stages");
  ol.replaceChildren(...a.stages.map((s) => el("li", {},
    el("strong", {}, s.stage), " ",
    el("span", { class: s.outcome === "failed" || s.outcome === "error" ? "stage-failed"
      : s.outcome === "running" ? "" : "stage-ok" }, s.outcome),
    s.log ? el("details", {}, el("summary", {}, `Log of ${s.stage}`), el("pre", { class: "log" }, s.log)) : null)));
}

const history = pagedList(document.getElementById("builds-pager"), `/api/v1/studies/${id}/builds/`,
  (items) => fillRows(document.querySelector("#builds tbody"), items, (b) => {
    const a = b.attributes;
    const failedAt = firstFailed(a);
    return [when(a.created), a.mode, a.state,
      failedAt ? `${failedAt.stage} (failed)` : a.stage || "", (a.sha || "").slice(0, 12)];
  }), { pageSize: 5 });

async function showBuild(task) {
  const b = (await get(`/api/v1/studies/${id}/builds/${task}/`)).data;
  drawBuild(b);
  if (!["queued", "running"].includes(b.attributes.state)) {
    // Ended: built, the buttons (activate needs a build) and the log change.
    await history();
    await refresh();
  }
}

// The server's stream says when a stage starts or ends; the page then reads
// the build (its stages and log tails) from the API.
const events = new EventSource(`/api/v1/studies/${id}/builds/events`);
for (const type of ["snapshot", "queued", "stage", "finished"]) {
  events.addEventListener(type, (ev) => {
    let data;
    try { data = JSON.parse(ev.data); } catch (e) { return; }
    const task = data.task || (data.build && data.build.id);
    if (type === "snapshot") {
      if (data.build) drawBuild(data.build);
      return;
    }
    if (task) showBuild(task).catch((e) => say(message(e), "error"));
  });
}

async function startBuild(kind) {
  try {
    const doc = await request("POST", `/api/v1/studies/${id}/${kind}/`);
    drawBuild(doc.data);
    say(kind === "build" ? "The build has started." : "The preview build has started.");
  } catch (e) {
    if (e instanceof ApiError && e.status === 409 && e.errors[0].meta && e.errors[0].meta.task) {
      await showBuild(e.errors[0].meta.task);
    }
    say(message(e), "error");
  }
}
// ---- opening the preview: served at /exp/studies/<study>/<child>/preview/
// to the researcher's own children, in a new tab.
async function previewLink() {
  const kids = (await get("/api/v1/children/?page_size=100")).data || [];
  const sel = document.getElementById("preview-child");
  const link = document.getElementById("preview-link");
  document.getElementById("preview-open").hidden = kids.length === 0;
  document.getElementById("preview-nochild").hidden = kids.length > 0;
  sel.replaceChildren(...kids.map((c) => el("option", { value: c.id }, c.attributes.given_name)));
  const point = () => { link.href = `/exp/studies/${id}/${sel.value}/preview/`; };
  sel.addEventListener("change", point);
  if (kids.length) point();
}
previewLink().catch((e) => say(message(e), "error"));

document.getElementById("build").addEventListener("click", () => startBuild("build"));
document.getElementById("preview").addEventListener("click", () => startBuild("preview"));
document.getElementById("cancel").addEventListener("click", async () => {
  try {
    await request("DELETE", `/api/v1/studies/${id}/builds/${current}/`);
    say("The build is being cancelled.");
  } catch (e) {
    say(message(e), "error");
  }
});

// A site reviewer approves a runner repository other than the default.
const approve = document.getElementById("approve-runner");
approve.addEventListener("click", async () => {
  try {
    await request("POST", `/api/v1/studies/${id}/runner-approval/`, {
      data: { type: "runner-approvals", attributes: { repo_url: study.attributes.metadata.player_repo_url } } });
    say("The runner repository is approved for this study.");
    await logs();
  } catch (e) {
    say(message(e), "error");
  }
});

// ---- the study's researchers: its groups, their members, and adding a
// member of the lab to a group (each group's manage permission decides).
const addForm = document.getElementById("add-person");
async function showPeople() {
  const groups = (await get(`/api/v1/researcher/studies/${id}/groups/`)).data;
  fillRows(document.querySelector("#people tbody"), groups, (g) => [
    g.id, g.attributes.description,
    el("ul", {}, ...g.attributes.members.map((m) => el("li", {}, `${m.attributes.email} `,
      el("button", { type: "button", class: "secondary", onclick: async () => {
        try {
          await request("DELETE", `/api/v1/researcher/studies/${id}/groups/${g.id}/members/${m.id}/`);
          say(`${m.attributes.email} left the ${g.id} group.`);
          await showPeople();
        } catch (e) {
          say(message(e), "error");
        }
      } }, `Remove ${m.attributes.email} from ${g.id}`)))),
  ]);
  const groupSel = document.getElementById("group");
  if (!groupSel.options.length) {
    for (const g of groups) groupSel.append(el("option", { value: g.id }, g.id));
  }
}
async function showLabPeople() {
  // Only lab members can join a study; a guest of the lab cannot list them.
  const sel = document.getElementById("person");
  try {
    const members = (await get(`/api/v1/labs/${study.relationships.lab.data.id}/members/?page_size=100`)).data;
    sel.replaceChildren(...members.map((m) => el("option", { value: m.id }, m.attributes.email)));
  } catch (e) {
    addForm.hidden = true;
  }
}
onSubmit(addForm, async (v) => {
  await request("POST", `/api/v1/researcher/studies/${id}/groups/${v.group}/members/`,
    { data: { type: "users", id: v.person } });
  say("Added to the study.");
  await showPeople();
});

// ---- study log
const logs = pagedList(document.getElementById("log-pager"), `/api/v1/researcher/studies/${id}/logs/`,
  (items) => fillRows(document.querySelector("#log tbody"), items, (l) => [
    when(l.attributes.created_at), l.attributes.action,
    l.attributes.user ? l.attributes.user.email : "",
    l.attributes.extra && Object.keys(l.attributes.extra).length
      ? Object.entries(l.attributes.extra).map(([k, v]) => `${k}: ${typeof v === "string" ? v : JSON.stringify(v)}`).join("; ")
      : "",
  ]));

async function refresh() {
  await showStudy();
  await showWorkflow();
  const meta = study.attributes.metadata || {};
  approve.hidden = !account.attributes.is_staff || !meta.player_repo_url;
  await logs();
}

try {
  await refresh();
  await history();
  await showPeople();
  await showLabPeople();
} catch (e) {
  say(message(e), "error");
}

// Housekeeping (issue 18): the hashed-id check, deleting preview responses.
housekeeping(id, say);
