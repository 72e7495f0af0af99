// studies.js: study discovery.  Active public studies a page at a time,
// filtered by a child's age; anyone may look, signed in or not.
import { get, notice, setupPage } from "/js/api.js";
import { studyCard } from "/js/studylist.js";

await setupPage();
const form = document.getElementById("filter");
const select = document.getElementById("age");
const list = document.getElementById("studies");
const status = document.getElementById("status");
const more = document.getElementById("more");

const params = new URLSearchParams(location.search);
select.value = params.get("age") || "";


let next = null;
async function load(path, append) {
  try {
    const doc = await get(path);
    if (!append) list.replaceChildren();
    for (const s of doc.data) list.append(studyCard(s, { showLab: false }));
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
