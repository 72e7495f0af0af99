// demographics.js: the family questionnaire.  Each save is a new snapshot
// (POST /api/v1/demographics/); the form starts from the newest one and
// the history lists them all, newest first.
import { get, getAll, notice, onSubmit, post, setupPage } from "/js/api.js";

const account = await setupPage({ requireLogin: true });
const form = document.getElementById("demographics");
const done = document.getElementById("done");
const fields = ["number_of_children", "number_of_guardians", "age", "gender", "education_level",
  "annual_income", "country", "state", "density", "lookit_referrer", "additional_comments"];
const RACE = "us_race_ethnicity_identification";

function fill(a) {
  for (const f of fields) form.elements[f].value = a[f] || "";
  for (const box of form.querySelectorAll(`input[name=${RACE}]`)) {
    box.checked = (a[RACE] || []).includes(box.value);
  }
}

async function showHistory() {
  const items = await getAll(`/api/v1/users/${account.id}/demographics/?page_size=100`);
  const table = document.getElementById("history");
  const body = table.tBodies[0];
  body.replaceChildren();
  for (const d of items) {
    const a = d.attributes;
    const row = body.insertRow();
    row.insertCell().textContent = new Date(a.date_created).toLocaleString();
    row.insertCell().textContent = a.number_of_children || "–";
    row.insertCell().textContent = a.country || "–";
    row.insertCell().textContent = a.age || "–";
  }
  table.hidden = items.length === 0;
  document.getElementById("history-empty").hidden = items.length !== 0;
}

const current = (await get("/api/v1/demographics/current/")).data;
if (current) fill(current.attributes);
await showHistory();

onSubmit(form, async (v) => {
  const attrs = {};
  for (const f of fields) attrs[f] = (v[f] || "").trim();
  attrs.country = attrs.country.toUpperCase();
  attrs.state = attrs.state.toUpperCase();
  attrs[RACE] = [...form.querySelectorAll(`input[name=${RACE}]:checked`)].map((b) => b.value);
  const doc = await post("/api/v1/demographics/", "demographics", attrs);
  fill(doc.data.attributes);
  await showHistory();
  notice(done, "Your answers are saved.", "success");
});
