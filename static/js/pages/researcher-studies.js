// researcher-studies.js: the researcher's studies, a page at a time from the server,
// filtered by state and by words of the name (both on the server, so a
// list of thousands stays fast), and the form that creates one in a lab.
import { get, getAll, onSubmit, request } from "/js/api.js";
import { el, fillRows, pagedList, setupResearch, when } from "/js/research.js";

await setupResearch();
const params = new URLSearchParams(location.search);
const stateSel = document.getElementById("state");
const wf = (await get("/api/v1/workflow/")).data.attributes;
for (const s of wf.states) stateSel.append(el("option", { value: s.name }, s.name));
stateSel.value = params.get("state") || "";
document.getElementById("search").value = params.get("search") || "";

const tbody = document.querySelector("#studies tbody");
const lab = params.get("lab");
const reload = pagedList(document.getElementById("pager"),
  `/api/v1/researcher/studies/${lab ? `?lab=${encodeURIComponent(lab)}` : ""}`, (items) => {
    document.getElementById("empty").hidden = items.length > 0;
    fillRows(tbody, items, (s) => [
      el("a", { href: `/researcher/studies/${s.id}/` }, s.attributes.name),
      s.attributes.state,
      when(s.attributes.date_modified),
    ]);
  });

function query() {
  let q = "";
  if (stateSel.value) q += `&state=${encodeURIComponent(stateSel.value)}`;
  const words = document.getElementById("search").value.trim();
  if (words) q += `&search=${encodeURIComponent(words)}`;
  return q;
}
await reload(query());
document.getElementById("filter").addEventListener("submit", (ev) => {
  ev.preventDefault();
  reload(query());
});

// The labs a study may be created in: those the researcher belongs to.
const labs = (await getAll("/api/v1/researcher/labs/?page_size=100", 500))
  .filter((l) => l.attributes.my_group);
const labSel = document.getElementById("lab");
for (const l of labs) labSel.append(el("option", { value: l.id }, l.attributes.name));
if (lab) labSel.value = lab;
document.getElementById("no-labs").hidden = labs.length > 0;
document.getElementById("create").hidden = labs.length === 0;

onSubmit(document.getElementById("create"), async (v) => {
  const attributes = { name: v.name || "" };
  if (v.short_description) attributes.short_description = v.short_description;
  const doc = await request("POST", "/api/v1/researcher/studies/", {
    data: { type: "studies", attributes, relationships: { lab: { data: { type: "labs", id: v.lab } } } },
  });
  location.assign(`/researcher/studies/${doc.data.id}/`);
});
