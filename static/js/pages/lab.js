// lab.js: one lab: its details, members and their roles (a lab admin
// changes them), the requests to join (accepted with a role, or
// declined), and, for a site admin, the approval that lets it run studies.
import { ApiError, del, get, notice, patch, request } from "/js/api.js";
import { el, fillRows, message, pagedList, pathId, setupResearch, when } from "/js/research.js";

const account = await setupResearch();
const id = pathId("labs");
const done = document.getElementById("done");
const ROLES = ["guest", "readonly", "member", "admin"];

const say = (text, kind = "success") => notice(done, text, kind);
async function act(fn, ok) {
  try {
    await fn();
    say(ok);
    await refresh();
  } catch (e) {
    say(message(e), "error");
  }
}

let lab;
async function showLab() {
  lab = (await get(`/api/v1/researcher/labs/${id}/`)).data;
  const a = lab.attributes;
  document.getElementById("title").textContent = a.name;
  document.title = `${a.name} – studyhub`;
  const dl = document.getElementById("details");
  dl.replaceChildren();
  for (const [k, label] of [["institution", "Institution"], ["principal_investigator_name", "Principal investigator"],
    ["contact_email", "Contact email"], ["description", "Description"], ["my_group", "Your role"]]) {
    dl.append(el("dt", {}, label), el("dd", {}, a[k] || "—"));
  }
  dl.append(el("dt", {}, "Approved to run studies"), el("dd", {}, a.approved_to_test ? "Yes" : "Not yet"));
  document.getElementById("approve").hidden = !account.attributes.is_staff || a.approved_to_test;
  document.getElementById("join").hidden = !!a.my_group || !!a.join_requested;
  document.getElementById("studies-link").href = `/researcher/?lab=${id}`;
  document.getElementById("participants-link").href = `/researcher/labs/${id}/participants/`;
  document.getElementById("lab-analytics-link").href = `/researcher/labs/${id}/analytics/`;
}

function roleSelect(m) {
  const sel = el("select", { "aria-label": `Role of ${m.attributes.email}` },
    ...ROLES.map((r) => el("option", { value: r, selected: r === m.attributes.group }, r)));
  sel.addEventListener("change", () => act(
    () => patch(`/api/v1/labs/${id}/members/${m.id}/`, "lab-members", m.id, { group: sel.value }),
    `${m.attributes.email} is now ${sel.value}.`));
  return sel;
}

const members = pagedList(document.getElementById("members-pager"), `/api/v1/labs/${id}/members/`,
  (items) => fillRows(document.querySelector("#members tbody"), items, (m) => [
    `${m.attributes.given_name || ""} ${m.attributes.family_name || ""}`.trim(),
    m.attributes.email,
    roleSelect(m),
    el("button", { type: "button", class: "secondary", onclick: () => act(
      () => del(`/api/v1/labs/${id}/members/${m.id}/`), `${m.attributes.email} left the lab.`) },
    `Remove ${m.attributes.email}`),
  ]));

const requests = pagedList(document.getElementById("requests-pager"), `/api/v1/labs/${id}/join-requests/`,
  (items) => {
    document.getElementById("no-requests").hidden = items.length > 0;
    document.getElementById("requests").hidden = items.length === 0;
    fillRows(document.querySelector("#requests tbody"), items, (r) => [
      `${r.attributes.given_name || ""} ${r.attributes.family_name || ""}`.trim(),
      r.attributes.email,
      when(r.attributes.date_requested),
      el("span", { class: "actions" },
        el("button", { type: "button", onclick: () => act(() => request("POST", `/api/v1/labs/${id}/members/`, {
          data: { type: "lab-members", attributes: { group: "member" },
            relationships: { user: { data: { type: "users", id: r.id } } } } }),
        `${r.attributes.email} joined as a member.`) }, `Accept ${r.attributes.email}`),
        el("button", { type: "button", class: "secondary", onclick: () => act(
          () => del(`/api/v1/labs/${id}/join-requests/${r.id}/`), `The request of ${r.attributes.email} is declined.`) },
        `Decline ${r.attributes.email}`)),
    ]);
  });

async function refresh() {
  await showLab();
  // Members and requests need read_lab__groups: a guest sees neither.
  for (const [load, box] of [[members, "members-box"], [requests, "requests-box"]]) {
    try {
      await load();
      document.getElementById(box).hidden = false;
    } catch (e) {
      if (!(e instanceof ApiError) || e.status !== 403) throw e;
      document.getElementById(box).hidden = true;
    }
  }
}

document.getElementById("approve").addEventListener("click", () => act(
  () => patch(`/api/v1/labs/${id}/`, "labs", id, { approved_to_test: true }), "The lab is approved."));
document.getElementById("join").addEventListener("click", () => act(
  () => request("POST", `/api/v1/labs/${id}/join-requests/`), "Your request to join is sent."));

try {
  await refresh();
} catch (e) {
  say(message(e), "error");
}
