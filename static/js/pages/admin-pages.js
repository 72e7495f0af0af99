// admin-pages.js: site admins edit the public pages' text (Markdown).
// The preview uses the renderer the public pages use; each save is one
// PATCH, which the server logs (the Changes table below).
import { get, notice, onSubmit, patch } from "/js/api.js";
import { renderMarkdown } from "/js/markdown.js";
import { el, fillRows, message, pagedList, setupResearch, when } from "/js/research.js";

await setupResearch({ admin: true });
const done = document.getElementById("done");
const select = document.getElementById("page");
const form = document.getElementById("edit");
const title = document.getElementById("title");
const body = document.getElementById("body");
let pages = [];

function show() {
  const p = pages.find((x) => x.id === select.value) || pages[0];
  if (!p) return;
  title.value = p.attributes.title;
  body.value = p.attributes.body;
  document.getElementById("view").href = `/${p.id}/`;
  document.getElementById("preview-section").hidden = true;
}

async function loadPages() {
  const doc = await get("/api/v1/site-pages/");
  pages = doc.data;
  const chosen = select.value || new URLSearchParams(location.search).get("page") || "";
  select.replaceChildren(...pages.map((p) => el("option", { value: p.id }, p.attributes.title)));
  if (chosen && pages.some((p) => p.id === chosen)) select.value = chosen;
  show();
}

select.addEventListener("change", show);
document.getElementById("preview-button").addEventListener("click", () => {
  renderMarkdown(document.getElementById("preview"), body.value);
  document.getElementById("preview-section").hidden = false;
});

const reloadLog = pagedList(document.getElementById("log-pager"), "/api/v1/admin/site-page-edits/", (items) => {
  document.getElementById("log-empty").hidden = items.length > 0;
  fillRows(document.querySelector("#log tbody"), items, (x) => {
    const a = x.attributes;
    return [when(a.created_at), a.new_title, a.admin_email, `${a.old_bytes} → ${a.new_bytes} bytes`];
  });
});

onSubmit(form, async () => {
  const slug = select.value;
  await patch(`/api/v1/site-pages/${slug}/`, "site-pages", slug,
    { title: title.value, body: body.value });
  notice(done, `Saved “${title.value}”.`, "success");
  await loadPages();
  await reloadLog();
});

try {
  await loadPages();
  await reloadLog();
} catch (e) {
  notice(done, message(e), "error");
}
