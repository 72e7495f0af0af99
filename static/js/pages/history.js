// history.js: the family's past sessions (the runner's default exit URL),
// newest first, with the researchers' feedback.
import { get, notice, setupPage } from "/js/api.js";

await setupPage({ requireLogin: true });
const list = document.getElementById("sessions");
const status = document.getElementById("status");
const more = document.getElementById("more");

function item(s) {
  const a = s.attributes;
  const li = document.createElement("li");
  const h = document.createElement("h2");
  h.textContent = a.study_name;
  li.append(h);
  const when = new Date(a.date_created);
  const p = document.createElement("p");
  p.textContent = `${a.child_name} took part on ${when.toLocaleDateString()}` +
    (a.completed ? "." : " (not finished).");
  li.append(p);
  if (a.feedback.length) {
    const h3 = document.createElement("h3");
    h3.textContent = "Feedback from the researchers";
    li.append(h3);
    for (const f of a.feedback) {
      const q = document.createElement("blockquote");
      q.className = "feedback";
      q.textContent = f.comment;
      li.append(q);
    }
  } else {
    const none = document.createElement("p");
    none.className = "hint";
    none.textContent = "No feedback yet.";
    li.append(none);
  }
  return li;
}

let next = null;
async function load(path) {
  try {
    const doc = await get(path);
    for (const s of doc.data) list.append(item(s));
    if (!list.children.length) notice(status, "Your family has not taken part in a study yet.");
    next = doc.links && doc.links.next ? doc.links.next : null;
    more.hidden = !next;
  } catch (e) {
    notice(status, e.message, "error");
  }
}
more.addEventListener("click", async (ev) => {
  ev.preventDefault();
  if (!next) return;
  const u = new URL(next, location.href);
  await load(u.pathname + u.search);
});

await load("/api/v1/history/?page_size=20");
