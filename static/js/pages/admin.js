// admin.js: the reviewer's queue: submitted studies, the longest waiting
// first (ordered on the server by the state change, then id, so paging
// never skips one), each opening the study page where the reviewer
// approves or rejects it with comments; and the labs to approve.
import { notice, patch } from "/js/api.js";
import { el, fillRows, message, pagedList, setupResearch, when } from "/js/research.js";

await setupResearch({ admin: true });
const done = document.getElementById("done");

const queue = pagedList(document.getElementById("queue-pager"),
  "/api/v1/researcher/studies/?state=submitted&sort=oldest", (items) => {
    document.getElementById("queue-empty").hidden = items.length > 0;
    document.getElementById("queue").hidden = items.length === 0;
    fillRows(document.querySelector("#queue tbody"), items, (s) => [
      el("a", { href: `/researcher/studies/${s.id}/` }, s.attributes.name),
      when(s.attributes.status_change_date),
      el("a", { href: `/researcher/studies/${s.id}/` }, "Review", el("span", { class: "visually-hidden" }, ` ${s.attributes.name}`)),
    ]);
  });

const labs = pagedList(document.getElementById("labs-pager"), "/api/v1/researcher/labs/?approved=false",
  (items) => {
    document.getElementById("labs-empty").hidden = items.length > 0;
    document.getElementById("labs").hidden = items.length === 0;
    fillRows(document.querySelector("#labs tbody"), items, (l) => [
      el("a", { href: `/researcher/labs/${l.id}/` }, l.attributes.name),
      l.attributes.institution,
      el("button", { type: "button", onclick: async () => {
        try {
          await patch(`/api/v1/labs/${l.id}/`, "labs", l.id, { approved_to_test: true });
          notice(done, `${l.attributes.name} is approved.`, "success");
          await labs();
        } catch (e) {
          notice(done, message(e), "error");
        }
      } }, `Approve ${l.attributes.name}`),
    ]);
  });

try {
  await queue();
  await labs();
} catch (e) {
  notice(done, message(e), "error");
}
