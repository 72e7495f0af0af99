// participants.js: the participant browser of a lab: a page of families,
// each with its children and their consented sessions (the server
// de-identifies them unless the researcher may see identifiable data,
// and writes each page to the access log).
import { get, getAll, notice } from "/js/api.js";
import { el, message, pagedList, pathId, setupResearch, when } from "/js/research.js";

await setupResearch();
const id = pathId("labs");
const done = document.getElementById("done");
document.getElementById("back").href = `/researcher/labs/${id}/`;
document.getElementById("analytics-link").href = `/researcher/labs/${id}/analytics/`;
const GENDERS = { f: "girl", m: "boy", o: "other", na: "gender not given" };

function family(f) {
  const a = f.attributes;
  const box = el("article", { class: "family" },
    el("h2", {}, a.nickname ? `Family ${a.hashed_id} (${a.nickname})` : `Family ${a.hashed_id}`),
    el("p", {}, `${a.response_count} consented session${a.response_count === 1 ? "" : "s"}, the last on ${when(a.last_session)}.`));
  for (const c of a.children) {
    const who = c.name ? `${c.name} (child ${c.hashed_id}, born ${c.birthday})` : `Child ${c.hashed_id}`;
    box.append(el("h3", {}, who),
      el("p", {}, `${GENDERS[c.gender] || c.gender}; ${c.age_at_birth}; languages: ${(c.languages || []).join(", ") || "not given"}.`));
    const table = el("table", {},
      el("caption", { class: "visually-hidden" }, `Sessions of ${who}`),
      el("thead", {}, el("tr", {}, ...["Study", "Session", "Hashed child id", "Age (days)", "Completed", "Data"]
        .map((h) => el("th", { scope: "col" }, h)))),
      el("tbody"));
    for (const r of c.responses) {
      const row = table.tBodies[0].insertRow();
      for (const v of [r.study_name, when(r.session_date), r.child_hashed_id, String(r.child_age_in_days),
        r.completed ? "yes" : "no"]) row.insertCell().textContent = v;
      row.insertCell().append(el("a", { href: `/api/v1/researcher/responses/${r.id}/json/`, download: "" },
        `JSON of the session of ${when(r.session_date)}`));
    }
    box.append(table);
  }
  return box;
}

const list = document.getElementById("families");
const reload = pagedList(document.getElementById("pager"), `/api/v1/researcher/labs/${id}/participants/`,
  (items) => {
    list.replaceChildren(...items.map(family));
    document.getElementById("empty").hidden = items.length > 0;
    document.body.dataset.ready = "true";
  }, { pageSize: 10 });

async function main() {
  try {
    const lab = (await get(`/api/v1/researcher/labs/${id}/`)).data.attributes;
    document.getElementById("title").textContent = `Participants: ${lab.name}`;
    document.title = `Participants: ${lab.name} – studyhub`;
    const studies = await getAll(`/api/v1/researcher/studies/?lab=${id}`);
    const select = document.getElementById("study");
    for (const s of studies) select.append(el("option", { value: s.id }, s.attributes.name));
    select.addEventListener("change", () =>
      reload(select.value ? `&study=${select.value}` : "").catch((e) => notice(done, message(e), "error")));
    await reload("");
  } catch (e) {
    notice(done, message(e), "error");
  }
}

main();
