// account.js: the user's own names and email preferences
// (PATCH /api/v1/users/<own id>/), the messages researchers sent
// (GET /api/v1/messages/), the data download (GET .../data/) and the
// account's erasure (DELETE /api/v1/users/<own id>/).
import { del, get, getAll, notice, onSubmit, patch, setupPage } from "/js/api.js";

const account = await setupPage({ requireLogin: true });
const form = document.getElementById("profile");
const done = document.getElementById("done");
const self = `/api/v1/users/${account.id}/`;
const names = ["given_name", "family_name", "nickname"];
const prefs = ["email_next_session", "email_new_studies", "email_study_updates",
  "email_response_questions"];

document.getElementById("email-shown").textContent = account.attributes.email;

function fill(attrs) {
  for (const n of names) form.elements[n].value = attrs[n] || "";
  for (const p of prefs) form.elements[p].checked = !!attrs[p];
}

fill((await get(self)).data.attributes);

onSubmit(form, async (v) => {
  const attrs = {};
  for (const n of names) attrs[n] = v[n] || "";
  for (const p of prefs) attrs[p] = !!v[p];
  const doc = await patch(self, "users", account.id, attrs);
  fill(doc.data.attributes);
  notice(done, "Your changes are saved.", "success");
});

async function showMessages() {
  const msgs = await getAll("/api/v1/messages/?page_size=100");
  const box = document.getElementById("messages");
  box.replaceChildren();
  for (const m of msgs) {
    const a = m.attributes;
    const art = document.createElement("article");
    const h = document.createElement("h3");
    h.textContent = a.subject;
    const meta = document.createElement("p");
    meta.className = "hint";
    meta.textContent = `${a.study ? a.study.name : "A study"}, ${a.created_at.slice(0, 10)}`;
    const body = document.createElement("p");
    body.className = "message-body";
    body.textContent = a.body;
    art.append(h, meta, body);
    box.append(art);
  }
  document.getElementById("no-messages").hidden = msgs.length !== 0;
}

await showMessages();

document.getElementById("download-data").href = `${self}data/`;

onSubmit(document.getElementById("erase-account"), async (v) => {
  if (!v.confirm) {
    throw [{ field: "confirm", detail: "Tick the box to confirm that you want to erase your account." }];
  }
  await del(self);
  location.assign("/");
});
