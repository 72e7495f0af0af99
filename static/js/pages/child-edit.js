// child-edit.js: change a child's details (PATCH) or erase the child
// (DELETE: sql/085_erasure.sql says what a study keeps).
import { ApiError, del, get, notice, onSubmit, patch, setupPage } from "/js/api.js";
import { childAttributes, fillChild } from "/js/child-form.js";

await setupPage({ requireLogin: true });
const id = location.pathname.split("/").filter(Boolean).pop();
const self = `/api/v1/children/${id}/`;
const form = document.getElementById("edit-child");
const remove = document.getElementById("remove-child");
const done = document.getElementById("done");

function show(attrs) {
  fillChild(form, attrs);
  document.getElementById("child-name").textContent = attrs.given_name;
  document.title = `Change ${attrs.given_name}'s details – studyhub`;
}

try {
  show((await get(self)).data.attributes);
} catch (e) {
  if (!(e instanceof ApiError) || e.status !== 404) throw e;
  form.hidden = true;
  remove.closest("section").hidden = true;
  notice(done, "We could not find this child. It may have been removed.");
}

onSubmit(form, async (v) => {
  const doc = await patch(self, "children", id, childAttributes(v));
  show(doc.data.attributes);
  notice(done, "Your changes are saved.", "success");
});

onSubmit(remove, async (v) => {
  if (!v.confirm) {
    throw [{ field: "confirm", detail: "Tick the box to confirm that you want to remove this child." }];
  }
  await del(self);
  location.assign("/children/");
});
