// info.js: the public pages a site admin writes (FAQ, privacy, terms of
// use, for scientists, resources, publications, contact).  The page's
// address names the text: /faq/ shows the "faq" page.
import { get, notice, setupPage } from "/js/api.js";
import { renderMarkdown } from "/js/markdown.js";

await setupPage();
const slug = location.pathname.split("/")[1];
const title = document.getElementById("title");
const status = document.getElementById("status");
const content = document.getElementById("content");

try {
  const doc = await get(`/api/v1/site-pages/${encodeURIComponent(slug)}/`);
  const a = doc.data.attributes;
  title.textContent = a.title;
  document.title = `${a.title} – studyhub`;
  if (a.body) {
    renderMarkdown(content, a.body);
  } else {
    notice(status, "This page has no text yet. Please come back soon.");
  }
  for (const link of document.querySelectorAll(".footer a, footer a")) {
    if (link.getAttribute("href") === location.pathname) link.setAttribute("aria-current", "page");
  }
} catch (e) {
  title.textContent = "This page could not be shown";
  notice(status, e.message, "error");
}
