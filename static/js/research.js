// research.js: what every researcher and admin page shares.  The frame
// (setupResearch) sends a visitor who is not signed in to the login page
// and one whose session is not two-factor verified to the enrolment page,
// because every researcher route of the API refuses such a session
// (403 two_factor_required).  Small DOM helpers keep the pages short and
// free of HTML parsing (text from the API is never parsed as markup).
import { ApiError, get, setupPage } from "/js/api.js";

/** The account of a signed-in, two-factor verified visitor; anyone else
 *  is sent to log in or to enrol.  admin: the page is for site admins. */
export async function setupResearch({ admin = false } = {}) {
  const account = await setupPage({ requireLogin: true });
  const a = account.attributes;
  if (!a.two_factor_verified) {
    const next = encodeURIComponent(location.pathname + location.search);
    location.replace(`/researcher/two-factor/?next=${next}`);
    return new Promise(() => {});
  }
  if (admin && !a.is_staff) {
    const main = document.getElementById("main");
    main.replaceChildren(el("h1", {}, "Not allowed"),
      el("p", {}, "This page is for site administrators."));
    return new Promise(() => {});
  }
  return account;
}

/** An element: el("a", {href: "/x", class: "button"}, "text", child...). */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children) if (c !== null && c !== undefined) node.append(c);
  return node;
}

/** The {id} segment of the page's path after prefix, e.g. "labs". */
export function pathId(after) {
  const parts = location.pathname.split("/").filter(Boolean);
  const i = parts.indexOf(after);
  return i >= 0 ? parts[i + 1] : "";
}

/** A readable date-time of an API timestamp. */
export function when(ts) {
  if (!ts) return "";
  const d = new Date(ts);
  return Number.isNaN(d.getTime()) ? String(ts) : d.toLocaleString();
}

/** A message of any error, for a notice. */
export function message(e) {
  if (e instanceof ApiError) return e.errors.map((x) => x.detail || x.title).join(" ");
  return String(e && e.message ? e.message : e);
}

/** Fills tbody with one row per item, each row the cells cells(item) gives
 *  (strings or nodes). */
export function fillRows(tbody, items, cells) {
  tbody.replaceChildren();
  for (const item of items) {
    const row = tbody.insertRow();
    for (const c of cells(item)) {
      const td = row.insertCell();
      if (c instanceof Node) td.append(c);
      else td.textContent = c === null || c === undefined ? "" : String(c);
    }
  }
}

/**
 * A server-paginated list: GET path with page and page_size, drawn by
 * draw(items, doc); the pager shows "Page x of y" and previous / next
 * buttons.  Returns reload(extraQuery).
 */
export function pagedList(pager, path, draw, { pageSize = 20 } = {}) {
  let page = 1;
  let query = "";
  const prev = el("button", { type: "button", class: "secondary" }, "Previous page");
  const next = el("button", { type: "button", class: "secondary" }, "Next page");
  const where = el("span", { "aria-live": "polite" });
  pager.replaceChildren(prev, " ", where, " ", next);
  async function load() {
    const sep = path.includes("?") ? "&" : "?";
    let doc;
    try {
      doc = await get(`${path}${sep}page=${page}&page_size=${pageSize}${query}`);
    } catch (e) {
      if (e instanceof ApiError && e.status === 404 && page > 1) { page = 1; return load(); }
      throw e;
    }
    const meta = (doc.links && doc.links.meta) || doc.meta || {};
    const pages = meta.pages || Math.max(1, Math.ceil((meta.count || 0) / pageSize));
    where.textContent = `Page ${page} of ${pages} (${meta.count ?? (doc.data || []).length} in all)`;
    prev.disabled = page <= 1;
    next.disabled = !(doc.links && doc.links.next);
    draw(doc.data || [], doc);
  }
  prev.addEventListener("click", () => { page -= 1; load(); });
  next.addEventListener("click", () => { page += 1; load(); });
  return (extra) => {
    if (extra !== undefined) { query = extra; page = 1; }
    return load();
  };
}
