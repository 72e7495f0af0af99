// account.js: the user's own names and email preferences
// (PATCH /api/v1/users/<own id>/).
import { get, notice, onSubmit, patch, setupPage } from "/js/api.js";

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
