// markdown.js: the one Markdown renderer of the pages (the public pages
// and the admin page's preview), markdown-it with raw HTML off: "<script>"
// in the text is shown as text, and links whose scheme is not safe
// (javascript:, vbscript:, file:, data: other than images) are not made
// links (markdown-it's validateLink).  Table alignment becomes a class,
// since the pages' CSP refuses style attributes.
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

/** The HTML of a Markdown text, safe to put into the page. */
export function renderMarkdown(text) {
  return md.render(text || "");
}
