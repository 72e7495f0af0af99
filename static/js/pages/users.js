// users.js: site admins search accounts (on the server, a page at a time)
// and change them: activate or deactivate, grant or revoke the researcher
// and site-admin roles, reset two-factor authentication.  Each change is
// one PATCH or POST; the server logs it and refuses an admin's removal of
// their own role or account.
import { notice, patch, request } from "/js/api.js";
import { el, fillRows, message, pagedList, setupResearch } from "/js/research.js";

const account = await setupResearch({ admin: true });
const done = document.getElementById("done");

async function change(u, attrs, what) {
  try {
    await patch(`/api/v1/admin/users/${u.id}/`, "admin-users", u.id, attrs);
    notice(done, `${u.attributes.email}: ${what}.`, "success");
  } catch (e) {
    notice(done, message(e), "error");
  }
  await reload();
}

function toggle(u, key, label, on, off) {
  const value = u.attributes[key];
  return el("span", {}, value ? "Yes " : "No ",
    el("button", { type: "button", class: "secondary",
      disabled: u.id === account.id && value && (key === "is_active" || key === "is_site_admin"),
      onclick: () => change(u, { [key]: !value }, value ? off : on) },
    `${value ? "Revoke" : "Grant"} ${label}`, el("span", { class: "visually-hidden" }, ` for ${u.attributes.email}`)));
}

const reload = pagedList(document.getElementById("pager"), "/api/v1/admin/users/", (items) => {
  document.getElementById("empty").hidden = items.length > 0;
  fillRows(document.querySelector("#users tbody"), items, (u) => {
    const a = u.attributes;
    return [
      a.email,
      `${a.given_name || ""} ${a.family_name || ""}`.trim() || a.nickname,
      el("span", {}, a.is_active ? "Yes " : "No ",
        el("button", { type: "button", class: a.is_active ? "warning" : "secondary",
          disabled: u.id === account.id,
          onclick: () => change(u, { is_active: !a.is_active }, a.is_active ? "deactivated" : "activated") },
        a.is_active ? "Deactivate" : "Activate", el("span", { class: "visually-hidden" }, ` ${a.email}`))),
      toggle(u, "is_researcher", "researcher", "is a researcher", "is no longer a researcher"),
      toggle(u, "is_site_admin", "site admin", "is a site admin", "is no longer a site admin"),
      a.two_factor_enabled
        ? el("span", {}, "On ", el("button", { type: "button", class: "secondary", onclick: async () => {
          try {
            await request("POST", `/api/v1/admin/users/${u.id}/reset-two-factor/`);
            notice(done, `${a.email}: two-factor authentication is reset; they were emailed.`, "success");
          } catch (e) {
            notice(done, message(e), "error");
          }
          await reload();
        } }, "Reset two-factor", el("span", { class: "visually-hidden" }, ` for ${a.email}`)))
        : "Off",
    ];
  });
});

function query() {
  const words = document.getElementById("search").value.trim();
  return words ? `&search=${encodeURIComponent(words)}` : "";
}
document.getElementById("filter").addEventListener("submit", (ev) => {
  ev.preventDefault();
  reload(query());
});
await reload("");
