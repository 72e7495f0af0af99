// jspsych.js: the platform's page for jsPsych studies (study_type 3).  It
// loads jsPsych (pinned from npm, web/vendor.list), runs the study's
// protocol as data (structure.timeline: trials of the plugins below; no
// researcher code runs on this origin), creates the response as the
// runner does (POST /api/v1/responses/), PATCHes jsPsych's data array
// after every trial, and at the end goes to the study's exit URL with the
// hashed child id and the response id.
import { ApiError, get, notice, request, resource } from "/js/api.js";

// jsPsych and its plugin are classic scripts (globals): loaded in order
// from the platform's own /vendor/ before the study runs.
const SCRIPTS = [
  "/vendor/jspsych@8.3.0/dist/index.browser.min.js",
  "/vendor/@jspsych/plugin-html-button-response@2.1.0/dist/index.browser.min.js",
];
function loadScript(src) {
  return new Promise((resolve, reject) => {
    const el = document.createElement("script");
    el.src = src;
    el.onload = resolve;
    el.onerror = () => reject(new Error("jsPsych could not be loaded."));
    document.head.append(el);
  });
}

const PLUGINS = {
  "html-button-response": () => globalThis.jsPsychHtmlButtonResponse,
};

const parts = location.pathname.split("/").filter(Boolean);
const preview = parts[0] === "exp";
const [studyId, childId] = preview ? parts.slice(2, 4) : parts.slice(1, 3);
const status = document.getElementById("status");
const title = document.getElementById("title");

function fail(text) {
  title.textContent = "The study could not start";
  notice(status, text, "error");
}

async function run() {
  for (const src of SCRIPTS) await loadScript(src);
  const study = (await get(`/api/v1/studies/${studyId}/`)).data;
  document.title = `${study.attributes.name} – studyhub`;
  title.textContent = study.attributes.name;
  const timeline = [];
  for (const [i, t] of (study.attributes.structure.timeline || []).entries()) {
    const plugin = PLUGINS[t.type] && PLUGINS[t.type]();
    if (!plugin) throw new Error(`Trial ${i + 1} uses "${t.type}", which this platform does not offer.`);
    timeline.push({ ...t, type: plugin });
  }
  if (!timeline.length) throw new Error("The study has no trials yet.");

  const created = await request("POST", "/api/v1/responses/", {
    data: {
      type: "responses",
      attributes: { exp_data: [], sequence: [], completed: false, is_preview: preview,
                    recording_method: "", global_event_timings: [] },
      relationships: { child: { data: { type: "children", id: childId } },
                       study: { data: { type: "studies", id: studyId } } },
    },
  });
  const responseId = created.data.id;
  document.body.dataset.response = responseId;
  const save = (completed) => request("PATCH", `/api/v1/responses/${responseId}/`,
    resource("responses", { exp_data: jsPsych.data.get().values(), completed }, responseId));

  let saving = Promise.resolve();
  const jsPsych = globalThis.initJsPsych({
    display_element: document.getElementById("experiment"),
    on_trial_finish: () => { saving = saving.then(() => save(false)).catch(() => {}); },
    on_finish: async () => {
      await saving;
      await save(true);
      const done = (await get(`/api/v1/responses/${responseId}/`)).data;
      let url;
      try { url = new URL(study.attributes.exit_url); } catch (e) { url = new URL("/", location.href); }
      url.searchParams.set("child", done.attributes.hash_child_id || "");
      url.searchParams.set("response", responseId);
      location.assign(url.toString());
    },
  });
  await jsPsych.run(timeline);
}

try {
  await run();
} catch (e) {
  fail(e instanceof ApiError ? e.message : String(e.message || e));
}
