// lab-public.js: a lab's public page (/labs/<slug>/): who they are and
// their active public studies, a page at a time.  The server answers an
// unknown slug with the 404 page before this script runs.
import { get, notice, setupPage } from "/js/api.js";
import { showStudies } from "/js/studylist.js";

await setupPage();
const slug = location.pathname.split("/")[2];
const status = document.getElementById("status");

function fact(dl, term, value) {
  const dt = document.createElement("dt");
  const dd = document.createElement("dd");
  dt.textContent = term;
  if (value instanceof Node) dd.append(value);
  else dd.textContent = value;
  dl.append(dt, dd);
}

try {
  const doc = await get(`/api/v1/lab-pages/${encodeURIComponent(slug)}/`);
  const a = doc.data.attributes;
  document.getElementById("name").textContent = a.name;
  document.title = `${a.name} – studyhub`;
  for (const [id, text] of [["institution", a.institution], ["description", a.description]]) {
    const p = document.getElementById(id);
    p.textContent = text || "";
    p.hidden = !text;
  }
  const dl = document.getElementById("facts");
  if (a.principal_investigator_name) fact(dl, "Principal investigator", a.principal_investigator_name);
  // Only web addresses become links (a javascript: URL would run).
  if (a.lab_website && /^https?:\/\//i.test(a.lab_website)) {
    const link = document.createElement("a");
    link.href = a.lab_website;
    link.rel = "noopener";
    link.textContent = a.lab_website;
    fact(dl, "Website", link);
  }
  if (a.contact_email) {
    const mail = document.createElement("a");
    mail.href = `mailto:${a.contact_email}`;
    mail.textContent = a.contact_email;
    fact(dl, "Contact", mail);
  }
  dl.hidden = !dl.children.length;
} catch (e) {
  notice(status, e.message, "error");
}
await showStudies(`/api/v1/lab-pages/${encodeURIComponent(slug)}/studies/`, {
  list: document.getElementById("studies"),
  status,
  nav: document.getElementById("pages"),
  empty: "This lab has no study open right now. Please come back soon.",
  showLab: false,
});
