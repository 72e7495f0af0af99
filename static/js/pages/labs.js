// labs.js: the labs the researcher can see (a page at a time from the
// server) and the form that creates one.
import { onSubmit, post } from "/js/api.js";
import { el, fillRows, pagedList, setupResearch } from "/js/research.js";

await setupResearch();
const tbody = document.querySelector("#labs tbody");
const reload = pagedList(document.getElementById("pager"), "/api/v1/researcher/labs/", (labs) =>
  fillRows(tbody, labs, (l) => [
    el("a", { href: `/researcher/labs/${l.id}/` }, l.attributes.name),
    l.attributes.institution,
    l.attributes.my_group || (l.attributes.join_requested ? "asked to join" : "none"),
    l.attributes.approved_to_test ? "yes" : "not yet",
  ]));
await reload();

onSubmit(document.getElementById("create"), async (v) => {
  const doc = await post("/api/v1/labs/", "labs", v);
  location.assign(`/researcher/labs/${doc.data.id}/`);
});
