// ages.js: the active public studies for one age group (babies,
// toddlers, preschoolers, school-age kids, adults), a page at a time.
// The group is the page's address: /ages/<group>/.
import { get, notice, setupPage } from "/js/api.js";
import { showStudies } from "/js/studylist.js";

await setupPage();
const group = location.pathname.split("/")[2];
const status = document.getElementById("status");

for (const a of document.querySelectorAll("nav.tabs a")) {
  if (a.getAttribute("href") === `/ages/${group}/`) a.setAttribute("aria-current", "page");
}
try {
  const doc = await get("/api/v1/age-groups/");
  const g = doc.data.find((x) => x.id === group);
  if (g) {
    const title = `Studies for ${g.attributes.label.replace(/^./, (c) => c.toLowerCase())}`;
    document.getElementById("title").textContent = title;
    document.title = `${title} – studyhub`;
  }
} catch (e) {
  notice(status, e.message, "error");
}
await showStudies(`/api/v1/age-groups/${encodeURIComponent(group)}/studies/`, {
  list: document.getElementById("studies"),
  status,
  nav: document.getElementById("pages"),
  empty: "No study is looking for this age group right now. Please come back soon.",
});
