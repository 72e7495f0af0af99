// studylist.js: a page of studies as cards, with numbered pages as plain
// links (?page=N), so each page has its own address, works with the back
// button and needs no script to follow.  Used by the lists by age group
// and by lab; the server gives one page at a time.
import { get, notice } from "/js/api.js";
import { rangeText } from "/js/age.js";

export const PAGE_SIZE = 10;

/** One study as a card: its name links to its page. */
export function studyCard(study, { showLab = true } = {}) {
  const a = study.attributes;
  const li = document.createElement("li");
  const h = document.createElement("h2");
  const link = document.createElement("a");
  link.href = `/studies/${study.id}/`;
  link.textContent = a.name;
  h.append(link);
  li.append(h);
  if (a.image) {
    const img = document.createElement("img");
    img.src = a.image;
    img.alt = "";
    img.className = "study-image";
    li.append(img);
  }
  for (const text of [a.short_description, rangeText(a.min_age_days, a.max_age_days),
    a.duration ? `It takes about ${a.duration}.` : ""]) {
    if (!text) continue;
    const p = document.createElement("p");
    p.textContent = text;
    li.append(p);
  }
  if (showLab && a.lab_name) {
    const p = document.createElement("p");
    p.append("By ");
    if (a.lab_slug) {
      const lab = document.createElement("a");
      lab.href = `/labs/${encodeURIComponent(a.lab_slug)}/`;
      lab.textContent = a.lab_name;
      p.append(lab);
    } else {
      p.append(a.lab_name);
    }
    li.append(p);
  }
  return li;
}

/** The page number of this address (?page=N), 1 when absent or odd. */
export function currentPage() {
  const n = Number.parseInt(new URLSearchParams(location.search).get("page") || "1", 10);
  return Number.isInteger(n) && n >= 1 ? n : 1;
}

function pageLink(n, text, rel) {
  const a = document.createElement("a");
  const u = new URL(location.href);
  if (n === 1) u.searchParams.delete("page");
  else u.searchParams.set("page", String(n));
  a.href = u.pathname + u.search;
  a.textContent = text;
  a.className = "button secondary";
  if (rel) a.rel = rel;
  return a;
}

/**
 * Loads page currentPage() of path into list (cards), says how many in
 * status, and fills nav with Previous / "Page X of Y" / Next.  empty is
 * the sentence for no study at all.
 */
export async function showStudies(path, { list, status, nav, empty, showLab = true }) {
  const page = currentPage();
  let doc;
  try {
    doc = await get(`${path}?page=${page}&page_size=${PAGE_SIZE}`);
  } catch (e) {
    // Past the last page (an old link): the first page instead.
    if (e.status === 404 && page > 1) {
      location.replace(location.pathname);
      return;
    }
    notice(status, e.message, "error");
    return;
  }
  list.replaceChildren(...doc.data.map((s) => studyCard(s, { showLab })));
  const meta = (doc.links && doc.links.meta) || {};
  const count = meta.count ?? doc.data.length;
  const pages = meta.pages || 1;
  notice(status, count ? `${count} ${count === 1 ? "study" : "studies"} found.` : empty);
  nav.replaceChildren();
  nav.hidden = pages <= 1;
  if (pages > 1) {
    if (page > 1) nav.append(pageLink(page - 1, "Previous page", "prev"), " ");
    const where = document.createElement("span");
    where.textContent = `Page ${page} of ${pages}`;
    nav.append(where);
    if (page < pages) nav.append(" ", pageLink(page + 1, "Next page", "next"));
  }
}
