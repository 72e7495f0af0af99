// api.js: the one client of studyhub's JSON:API that every page uses.
// It sends the session cookie and, on unsafe methods, the X-CSRFToken
// header from the csrftoken cookie (Django's rule, which the server keeps);
// it follows pagination links; and it turns JSON:API error documents into
// the page's error summary (GOV.UK pattern: a summary at the top linking to
// each field, and the message beside the field).  No page builds a fetch
// by hand.  No global state: everything a page needs is passed in.

const JSONAPI = "application/vnd.api+json";

/** An answer that was not 2xx: status and the document's errors. */
export class ApiError extends Error {
  constructor(status, errors) {
    super(errors.length ? errors[0].detail || errors[0].title || `Error ${status}` : `Error ${status}`);
    this.status = status;
    this.errors = errors;
  }
}

function cookie(name) {
  for (const part of document.cookie.split(";")) {
    const [k, ...v] = part.trim().split("=");
    if (k === name) return decodeURIComponent(v.join("="));
  }
  return "";
}

/**
 * One request.  body: an object sent as JSON (a JSON:API document or the
 * plain {email, password} the auth routes take).  Returns the parsed
 * document (null for 204), with .status set; throws ApiError otherwise.
 */
export async function request(method, path, body) {
  const headers = { Accept: JSONAPI };
  if (body !== undefined) headers["Content-Type"] = JSONAPI;
  if (!["GET", "HEAD", "OPTIONS"].includes(method)) {
    const token = cookie("csrftoken");
    if (token) headers["X-CSRFToken"] = token;
  }
  let resp;
  try {
    resp = await fetch(path, {
      method,
      headers,
      credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (e) {
    throw new ApiError(0, [{ detail: "We could not reach the server. Check your connection and try again." }]);
  }
  let doc = null;
  const text = resp.status === 204 ? "" : await resp.text();
  if (text) {
    try {
      doc = JSON.parse(text);
    } catch (e) {
      doc = null;
    }
  }
  if (!resp.ok) {
    const errors = doc && Array.isArray(doc.errors) ? doc.errors
      : [{ status: String(resp.status), detail: "Something went wrong. Please try again." }];
    throw new ApiError(resp.status, errors);
  }
  if (doc) doc.status = resp.status;
  return doc || { status: resp.status };
}

export const get = (path) => request("GET", path);
export const del = (path) => request("DELETE", path);

/** A resource document: { data: { type, id?, attributes } }. */
export function resource(type, attributes, id) {
  const data = { type, attributes };
  if (id) data.id = id;
  return { data };
}

export const post = (path, type, attributes) => request("POST", path, resource(type, attributes));
export const patch = (path, type, id, attributes) =>
  request("PATCH", path, resource(type, attributes, id));

/** Every item of a list, following links.next page by page. */
export async function getAll(path, limit = 1000) {
  const items = [];
  let next = path;
  while (next && items.length < limit) {
    const doc = await get(next);
    items.push(...(doc.data || []));
    next = doc.links && doc.links.next ? new URL(doc.links.next, location.href).pathname +
      new URL(doc.links.next, location.href).search : null;
  }
  return items;
}

/** The signed-in account (accounts/me), or null when nobody is. */
export async function me() {
  try {
    const doc = await get("/api/v1/accounts/me/");
    return doc.data;
  } catch (e) {
    if (e instanceof ApiError && (e.status === 401 || e.status === 403)) return null;
    throw e;
  }
}

// ---- forms ---------------------------------------------------------------

/** The form's named fields as an object (checkboxes as booleans, empty
 *  optional fields omitted unless keepEmpty). */
export function formValues(form, { keepEmpty = false } = {}) {
  const out = {};
  for (const el of form.elements) {
    if (!el.name || el.disabled) continue;
    if (el.type === "checkbox") out[el.name] = el.checked;
    else if (el.type === "radio") { if (el.checked) out[el.name] = el.value; }
    else if (el.value !== "" || keepEmpty) out[el.name] = el.value;
  }
  return out;
}

/** Removes the summary and every field error that showErrors added. */
export function clearErrors(form) {
  const root = form.closest("main") || document;
  root.querySelectorAll(".error-summary").forEach((n) => n.remove());
  form.querySelectorAll(".field-error").forEach((n) => n.remove());
  form.querySelectorAll(".has-error").forEach((n) => n.classList.remove("has-error"));
  form.querySelectorAll("[aria-invalid]").forEach((n) => {
    n.removeAttribute("aria-invalid");
    const ids = (n.getAttribute("aria-describedby") || "").split(" ").filter((x) => !x.endsWith("-error"));
    if (ids.length) n.setAttribute("aria-describedby", ids.join(" "));
    else n.removeAttribute("aria-describedby");
  });
}

/** The field an error points at: source.pointer "/data/attributes/x" or
 *  "/x", or source.parameter. */
function fieldFor(form, err) {
  const src = err.source || {};
  const ptr = src.pointer || src.parameter || "";
  const name = ptr.split("/").filter(Boolean).pop();
  if (!name || name === "data" || name === "attributes") return null;
  return form.elements.namedItem(name);
}

/** The text of the question a field answers: its group's legend for a
 *  radio button or checkbox in a fieldset, else its label (without
 *  "(optional)"). */
function questionOf(field) {
  const set = field.closest("fieldset");
  const legend = set && (field.type === "radio" || field.type === "checkbox")
    ? set.querySelector("legend") : null;
  const label = legend || (field.id && document.querySelector(`label[for="${field.id}"]`));
  return label ? label.textContent.replace(/\s*\(optional\)\s*$/, "").trim() : "";
}

/**
 * Shows an error (an ApiError, or a list of {detail, field}) on a form:
 * an error summary at the top of main, each entry linking to its field,
 * and the message beside the field.  Focuses the summary, as GOV.UK does,
 * so a screen reader announces it.
 */
export function showErrors(form, error) {
  clearErrors(form);
  const list = error instanceof ApiError ? error.errors
    : Array.isArray(error) ? error
      : [{ detail: String(error && error.message ? error.message : error) }];
  const summary = document.createElement("div");
  summary.className = "error-summary";
  summary.setAttribute("role", "alert");
  summary.tabIndex = -1;
  const h = document.createElement("h2");
  h.textContent = "There is a problem";
  h.id = "error-summary-title";
  summary.setAttribute("aria-labelledby", h.id);
  const ul = document.createElement("ul");
  summary.append(h, ul);
  for (const err of list) {
    let field = err.field ? form.elements.namedItem(err.field) : fieldFor(form, err);
    if (field && !(field instanceof Element)) field = field[0];   // a radio group
    const detail = err.detail || err.title || "Something went wrong.";
    const li = document.createElement("li");
    if (field && field.id) {
      const a = document.createElement("a");
      a.href = `#${field.id}`;
      // The summary names the question: "This field is required." alone
      // would not say which one.
      const name = questionOf(field);
      a.textContent = name ? `${name}: ${detail}` : detail;
      a.addEventListener("click", (ev) => { ev.preventDefault(); field.focus(); });
      li.append(a);
      const wrap = field.closest(".field") || field.parentElement;
      const msg = document.createElement("p");
      msg.className = "field-error";
      msg.id = `${field.id}-error`;
      msg.textContent = detail;
      // GOV.UK's order: label, hint, error, then the field.
      const hint = wrap.querySelector(".hint");
      const label = wrap.querySelector("label, legend");
      const after = hint || label;
      if (after) after.after(msg);
      else wrap.prepend(msg);
      wrap.classList.add("has-error");
      field.setAttribute("aria-invalid", "true");
      const ids = (field.getAttribute("aria-describedby") || "").split(" ").filter(Boolean);
      ids.push(msg.id);
      field.setAttribute("aria-describedby", ids.join(" "));
    } else {
      li.textContent = detail;
    }
    ul.append(li);
  }
  const main = form.closest("main") || document.body;
  const h1 = main.querySelector("h1");
  if (h1) h1.after(summary);
  else main.prepend(summary);
  summary.focus();
}

/** Shows a short message in the element (role=status announces it). */
export function notice(el, text, kind = "") {
  el.textContent = text;
  el.className = `notice ${kind}`.trim();
  el.hidden = !text;
}

/**
 * Runs a form's submit through fn(values): errors land in the summary, the
 * button is disabled meanwhile so a double tap sends once.
 */
export function onSubmit(form, fn) {
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const button = form.querySelector("button[type=submit], button:not([type])");
    if (button) button.disabled = true;
    try {
      clearErrors(form);
      await fn(formValues(form), ev);
    } catch (e) {
      showErrors(form, e);
    } finally {
      if (button) button.disabled = false;
    }
  });
}

// ---- the page frame ------------------------------------------------------

/**
 * Every page calls this first.  It shows the navigation that fits the
 * visitor (signed in or not), marks the current link, and, when login is
 * required, sends a visitor who is not signed in to the login page with
 * a way back.  Returns the account (or null).
 */
export async function setupPage({ requireLogin = false } = {}) {
  let account = null;
  try {
    account = await me();
  } catch (e) {
    account = null;
  }
  // data-when: "in", "out", or (researcher and admin links) "researcher",
  // "admin": shown only to an account with that role.
  const a = account ? account.attributes || {} : {};
  const shown = { in: !!account, out: !account, researcher: !!(a.is_researcher || a.is_staff),
                  admin: !!a.is_staff };
  for (const el of document.querySelectorAll("[data-when]")) {
    el.hidden = !shown[el.dataset.when];
  }
  for (const a of document.querySelectorAll("header nav a")) {
    if (a.getAttribute("href") === location.pathname) a.setAttribute("aria-current", "page");
  }
  if (requireLogin && !account) {
    const next = encodeURIComponent(location.pathname + location.search);
    location.replace(`/login/?next=${next}`);
    return new Promise(() => {});    // the page is going away
  }
  return account;
}

/** A same-site path from ?next=, else fallback (never another origin). */
export function nextPath(fallback = "/") {
  const next = new URLSearchParams(location.search).get("next") || "";
  // "//host" and "/\host" would leave the site: only plain paths.
  return /^\/(?![\/\\])/.test(next) ? next : fallback;
}
