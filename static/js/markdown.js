// markdown.js: the one Markdown renderer of the pages (the public pages
// and the admin page's preview): markdown-it with raw HTML off, so
// "<script>" in the text shows as text, and links whose scheme is not
// safe (javascript:, vbscript:, file:, data: other than images) are not
// made links (markdown-it's validateLink).  Its HTML is then parsed in an
// inert document (DOMParser runs nothing) and copied into the page through
// an allowlist of the elements and attributes markdown-it makes: a second
// guard, should the renderer ever let something through.  Table alignment
// becomes a class, since the pages' CSP refuses style attributes.
import markdownit from "/vendor/markdown-it@15.0.3/dist/browser/markdown-it.esm.min.mjs";

const md = markdownit({ html: false, linkify: true, typographer: false });

md.core.ruler.push("align_class", (state) => {
  for (const t of state.tokens) {
    if (t.type !== "th_open" && t.type !== "td_open") continue;
    const i = t.attrIndex("style");
    if (i < 0) continue;
    const m = /text-align:(left|right|center)/.exec(t.attrs[i][1]);
    t.attrs.splice(i, 1);
    if (m) t.attrJoin("class", `align-${m[1]}`);
  }
});

const TAGS = new Set(["P", "H1", "H2", "H3", "H4", "H5", "H6", "UL", "OL", "LI", "A", "EM",
  "STRONG", "CODE", "PRE", "BLOCKQUOTE", "HR", "BR", "IMG", "TABLE", "THEAD", "TBODY", "TR",
  "TH", "TD", "S"]);
const ATTRS = { A: ["href", "title"], IMG: ["src", "alt", "title"], OL: ["start"],
  TH: ["class"], TD: ["class"], CODE: ["class"] };
// Web links, mail and same-site paths only.
const SAFE_URL = /^(https?:\/\/|mailto:|\/(?![\/\\])|#)/i;

function copy(from, to) {
  for (const node of from.childNodes) {
    if (node.nodeType === Node.TEXT_NODE) {
      to.append(node.textContent);
    } else if (node.nodeType === Node.ELEMENT_NODE) {
      if (!TAGS.has(node.tagName)) {
        copy(node, to);                 // keep the text, drop the element
        continue;
      }
      const el = document.createElement(node.tagName.toLowerCase());
      for (const name of ATTRS[node.tagName] || []) {
        const v = node.getAttribute(name);
        if (v === null) continue;
        if ((name === "href" || name === "src") && !SAFE_URL.test(v.trim())) continue;
        el.setAttribute(name, v);
      }
      if (el.tagName === "A" && /^https?:/i.test(el.getAttribute("href") || "")) {
        el.rel = "noopener noreferrer";
      }
      copy(node, el);
      to.append(el);
    }
  }
}

/** Renders Markdown text into container (its children replaced). */
export function renderMarkdown(container, text) {
  const doc = new DOMParser().parseFromString(md.render(text || ""), "text/html");
  const out = document.createDocumentFragment();
  copy(doc.body, out);
  container.replaceChildren(out);
}
