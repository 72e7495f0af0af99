// operations.js: the site admin's view of the scheduled jobs (their time,
// next run and last outcomes) and of the task queue, read-only, from
// /api/v1/admin/jobs/ and /api/v1/admin/tasks/ (site admins only).
import { get, notice } from "/js/api.js";
import { el, fillRows, message, pagedList, setupResearch, when } from "/js/research.js";

await setupResearch({ admin: true });
const done = document.getElementById("done");

// Three outcomes: done, done but look (problems), failed.
function outcomeClass(outcome) {
  if (outcome === "failed" || outcome === "abandoned") return "stage-failed";
  if (outcome === "succeeded_with_problems") return "stage-warn";
  return outcome === "succeeded" ? "stage-ok" : "";
}

async function jobs() {
  const items = (await get("/api/v1/admin/jobs/")).data || [];
  document.getElementById("jobs-empty").hidden = items.length > 0;
  fillRows(document.querySelector("#jobs tbody"), items, (j) => {
    const a = j.attributes;
    const runs = el("ul", { class: "runs" }, ...a.runs.map((r) => el("li", {},
      el("span", { class: outcomeClass(r.outcome) }, r.outcome.replaceAll("_", " ")),
      ` ${when(r.started_at)} (${r.reason}, ${r.took_s} s)${r.detail ? `: ${r.detail}` : ""}`)));
    if (!a.runs.length) runs.append(el("li", {}, "never run"));
    return [j.id, `${a.at} ${a.zone}`, a.next_run ? when(a.next_run) : "off",
      a.running_here ? el("div", {}, el("strong", {}, "running now"), runs) : runs];
  });
}

const stateSel = document.getElementById("tasks-state");
const tasks = pagedList(document.getElementById("tasks-pager"), "/api/v1/admin/tasks/", (items) => {
  document.getElementById("tasks-empty").hidden = items.length > 0;
  fillRows(document.querySelector("#tasks tbody"), items, (t) => {
    const a = t.attributes;
    const shown = a.outcome || a.state;
    return [a.kind, a.subject || "", el("span", { class: outcomeClass(shown) }, shown.replaceAll("_", " ")),
      a.stage || "", String(a.attempts), when(a.created_at),
      a.finished_at ? `${when(a.finished_at)} (${a.took_s} s)` : "", a.error || a.problems || ""];
  });
});
stateSel.addEventListener("change", () => tasks(`&state=${stateSel.value}`).catch((e) => notice(done, message(e), "error")));

try {
  await jobs();
  await tasks("&state=active");
} catch (e) {
  notice(done, message(e), "error");
}
