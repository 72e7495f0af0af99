// children.js: the family's children (every page of the list) and the
// form that adds one.
import { getAll, notice, onSubmit, post, setupPage } from "/js/api.js";
import { childAttributes } from "/js/child-form.js";

await setupPage({ requireLogin: true });
const table = document.getElementById("children");
const form = document.getElementById("add-child");
const done = document.getElementById("done");

async function showChildren() {
  const kids = await getAll("/api/v1/children/?page_size=100");
  const body = table.tBodies[0];
  body.replaceChildren();
  for (const kid of kids) {
    const row = body.insertRow();
    row.insertCell().textContent = kid.attributes.given_name;
    row.insertCell().textContent = kid.attributes.birthday;
    const a = document.createElement("a");
    a.href = `/children/${kid.id}/`;
    a.textContent = "Change";
    const hidden = document.createElement("span");
    hidden.className = "visually-hidden";
    hidden.textContent = ` ${kid.attributes.given_name}'s details`;
    a.append(hidden);
    row.insertCell().append(a);
  }
  table.hidden = kids.length === 0;
  document.getElementById("empty").hidden = kids.length !== 0;
}

await showChildren();

onSubmit(form, async (v) => {
  const doc = await post("/api/v1/children/", "children", childAttributes(v, { create: true }));
  form.reset();
  await showChildren();
  notice(done, `${doc.data.attributes.given_name} is added.`, "success");
});
