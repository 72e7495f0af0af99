// studies.js: study discovery.  Active public studies a page at a time,
// filtered by a child's age; anyone may look, signed in or not.
import { get, notice, setupPage } from "/js/api.js";
import { rangeText } from "/js/age.js";

await setupPage();
const form = document.getElementById("filter");
const select = document.getElementById("age");
const list = document.getElementById("studies");
const status = document.getElementById("status");
const more = document.getElementById("more");

const params = new URLSearchParams(location.search);
select.value = params.get("age") || "";

function card(study) {
  const a = study.attributes;
  const li = document.createElement("li");
  const h = document.createElement("h2");
  const link = document.createElement("a");
  link.href = `/studies/${study.id}/`;
  link.textContent = a.name;
  h.append(link);
  li.append(h);
  if (a.image) {
    const img = document.createElement("img");
    img.src = a.image;
    img.alt = "";
    img.className = "study-image";
    li.append(img);
  }
  for (const text of [a.short_description, rangeText(a.min_age_days, a.max_age_days),
    a.duration ? `It takes about ${a.duration}.` : ""]) {
    if (!text) continue;
    const p = document.createElement("p");
    p.textContent = text;
    li.append(p);
  }
  return li;
}

let next = null;
async function load(path, append) {
  try {
    const doc = await get(path);
    if (!append) list.replaceChildren();
    for (const s of doc.data) list.append(card(s));
    const total = doc.links && doc.links.meta ? doc.links.meta.count : doc.data.length;
    notice(status, list.children.length
      ? `${total} ${total === 1 ? "study" : "studies"} found.`
      : "No study is looking for children of this age right now. Please come back soon.");
    next = doc.links && doc.links.next ? doc.links.next : null;
    more.hidden = !next;
  } catch (e) {
    notice(status, e.message, "error");
  }
}

function listPath() {
  const age = select.value;
  return "/api/v1/discover/?page_size=20" + (age ? `&age_days=${encodeURIComponent(age)}` : "");
}

form.addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const url = new URL(location.href);
  if (select.value) url.searchParams.set("age", select.value);
  else url.searchParams.delete("age");
  history.replaceState(null, "", url);
  await load(listPath(), false);
});
more.addEventListener("click", async (ev) => {
  ev.preventDefault();
  if (!next) return;
  const u = new URL(next, location.href);
  await load(u.pathname + u.search, true);
});

await load(listPath(), false);
