// data.js: a study's children's data, for researchers who may see it: the
// consent manager (the consent video plays in the page; accept or reject
// with a comment), the responses (shown by the server only once consent
// is accepted) with their videos, feedback count, payment and session
// status and star; the export downloads, identifiable only on request;
// the video archive with its progress and link; messages to families;
// and the study's access log, where every one of these reads is written.
import { ApiError, get, notice, patch, request } from "/js/api.js";
import { el, fillRows, message, pagedList, pathId, setupResearch, when } from "/js/research.js";

await setupResearch();
const id = pathId("studies");
const done = document.getElementById("done");
const say = (text, kind = "success") => notice(done, text, kind);
document.getElementById("back").href = `/researcher/studies/${id}/`;

const FILES = ["responses.json", "summary.csv", "summary-dictionary.csv", "children.csv",
  "children-dictionary.csv", "frames.csv", "frames-dictionary.csv", "demographics.csv",
  "demographics-dictionary.csv", "demographics.json"];

/** A section whose list the caller may not read says so instead. */
async function guarded(load, sectionId) {
  try {
    await load();
  } catch (e) {
    if (!(e instanceof ApiError) || e.status !== 403) throw e;
    const s = document.querySelector(`[aria-labelledby=${sectionId}]`);
    s.append(el("p", { class: "notice" }, message(e)));
  }
}

// ---- consent manager
const consentState = document.getElementById("consent-state");
function consentCard(r) {
  const a = r.attributes;
  const form = el("form", { class: "consent" });
  const cid = `comments-${r.id}`;
  const last = a.rulings[0];
  form.append(
    el("h3", {}, `Session of ${when(a.session_date)}`),
    el("p", {}, `Child ${a.child_hashed_id}, ${a.child_age_in_days} days old. Consent: ${a.consent}.`
      + (last ? ` Last ruling by ${last.arbiter_email || "someone"}: ${last.action}${last.comments ? ` (${last.comments})` : ""}.` : "")));
  if (a.consent_videos.length === 0) form.append(el("p", {}, "This session has no consent video."));
  for (const v of a.consent_videos) {
    if (v.url) form.append(el("video", { controls: true, preload: "metadata", src: v.url, "aria-label": `Consent video ${v.frame_id || ""}` }));
    else form.append(el("p", {}, "This consent video cannot be played now."));
  }
  form.append(
    el("div", { class: "field" }, el("label", { for: cid }, "Comment (optional)"),
      el("textarea", { id: cid, name: "comments", rows: "2" })),
    el("div", { class: "actions" },
      el("button", { type: "submit", value: "accepted" }, "Accept consent"),
      el("button", { type: "submit", value: "rejected", class: "warning" }, "Reject consent")));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      await request("POST", `/api/v1/researcher/responses/${r.id}/consent/`, {
        data: { type: "consent-rulings", attributes: { action: ev.submitter.value, comments: form.elements.comments.value } } });
      say(`Consent ${ev.submitter.value} for the session of ${when(a.session_date)}.`);
      await consent();
      await responses();
      await access();
    } catch (e) {
      say(message(e), "error");
    }
  });
  return form;
}
const consent = pagedList(document.getElementById("consent-pager"), `/api/v1/researcher/studies/${id}/consent/`,
  (items) => {
    document.getElementById("consent-empty").hidden = items.length > 0;
    document.getElementById("consent-list").replaceChildren(...items.map(consentCard));
  }, { pageSize: 10 });
consentState.addEventListener("change", () => consent(`&state=${consentState.value}`));

// ---- responses
const PAYMENT = ["", "to_pay", "paid", "no_pay"];
const SESSION = ["", "follow_up", "complete", "bad_data"];
function choice(r, key, values, label) {
  const sel = el("select", { "aria-label": `${label} of the session of ${when(r.attributes.session_date)}` },
    ...values.map((v) => el("option", { value: v, selected: v === (r.attributes[key] || "") }, v || "—")));
  sel.addEventListener("change", () => edit(r, { [key]: sel.value }, `${label} saved.`));
  return sel;
}
async function edit(r, attrs, ok) {
  try {
    await patch(`/api/v1/researcher/responses/${r.id}/`, "responses", r.id, attrs);
    say(ok);
    await responses();
  } catch (e) {
    say(message(e), "error");
  }
}
async function showVideos(r) {
  const box = document.getElementById("videos");
  const list = document.getElementById("video-list");
  try {
    const doc = await get(`/api/v1/videos/?response=${r.id}&page_size=50`);
    list.replaceChildren(...(doc.data || []).map((v) => el("li", {},
      el("p", {}, `${v.attributes.frame_id || "video"}${v.attributes.is_consent_footage ? " (consent)" : ""}`),
      v.attributes.url ? el("video", { controls: true, preload: "metadata", src: v.attributes.url,
        "aria-label": `Video of frame ${v.attributes.frame_id || ""}` }) : el("p", {}, "Cannot be played now."))));
    if (!list.children.length) list.append(el("li", {}, "This session has no video."));
    document.getElementById("videos-title").textContent = `Videos of the session of ${when(r.attributes.session_date)}`;
    box.hidden = false;
    await access();
  } catch (e) {
    say(message(e), "error");
  }
}
const starred = document.getElementById("starred");
const responses = pagedList(document.getElementById("responses-pager"), `/api/v1/researcher/studies/${id}/responses/`,
  (items) => {
    document.getElementById("responses-empty").hidden = items.length > 0;
    fillRows(document.querySelector("#responses tbody"), items, (r) => {
      const a = r.attributes;
      return [
        `${when(a.session_date)}${a.is_preview ? " (preview)" : ""}`,
        `${a.child_hashed_id}, ${a.child_age_in_days} days`,
        a.completed ? "yes" : "no",
        String(a.feedback_count),
        choice(r, "researcher_payment_status", PAYMENT, "Payment"),
        choice(r, "researcher_session_status", SESSION, "Session status"),
        el("button", { type: "button", class: "secondary", "aria-pressed": a.researcher_star ? "true" : "false",
          onclick: () => edit(r, { researcher_star: !a.researcher_star }, a.researcher_star ? "Star removed." : "Starred.") },
        a.researcher_star ? "★ Starred" : "☆ Star"),
        el("span", {}, el("button", { type: "button", class: "secondary", onclick: () => showVideos(r) }, "Open videos"),
          " ", el("a", { href: `/api/v1/researcher/responses/${r.id}/json/`, download: "" },
            `JSON of the session of ${when(a.session_date)}`)),
      ];
    });
  });
starred.addEventListener("change", () => responses(starred.checked ? "&starred=true" : ""));

// ---- exports: plain links, so the browser downloads them as files.
function drawExports() {
  const q = [];
  if (document.getElementById("identifiable").checked) q.push("identifiable=true");
  if (document.getElementById("with-preview").checked) q.push("preview=true");
  const qs = q.length ? `?${q.join("&")}` : "";
  document.getElementById("exports").replaceChildren(...FILES.map((f) =>
    el("li", {}, el("a", { href: `/api/v1/researcher/studies/${id}/exports/${f}${qs}`, download: "" }, `Download ${f}`))));
}
document.getElementById("identifiable").addEventListener("change", drawExports);
document.getElementById("with-preview").addEventListener("change", drawExports);
drawExports();

// ---- video archive: asked for here, built by a task; the list shows its
// state until the link comes (polled while one is on its way).
const ZIP_STATE = { queued: "waiting to start", running: "being built", succeeded: "ready",
  failed: "failed", cancelled: "cancelled" };
const ZIP_STAGE = { prepare: "listing the videos", lookup: "looking for an earlier archive",
  build: "zipping the videos", notify: "emailing the link", fail_notify: "emailing the failure" };
let zipTimer = null;
let zipWaiting = false;
async function zips() {
  clearTimeout(zipTimer);
  const doc = await get(`/api/v1/studies/${id}/video-zips/`);
  const items = doc.data || [];
  document.getElementById("zips-empty").hidden = items.length > 0;
  document.getElementById("zips").replaceChildren(...items.map((z) => {
    const a = z.attributes;
    const what = `${a.consent_only ? "Consent videos" : "All videos"} (${a.videos}), asked ${when(a.created_at)}: `;
    let state = ZIP_STATE[a.state] || a.state;
    if (a.state === "running" && ZIP_STAGE[a.stage]) state += `, ${ZIP_STAGE[a.stage]}`;
    if (a.state === "failed" && a.error) state += ` (${a.error})`;
    const li = el("li", { class: `zip zip-${a.state}` }, what, el("strong", {}, state));
    if (a.download_url) {
      li.append(" ", el("a", { href: a.download_url, download: "" }, "Download the archive"),
        ` (link valid until ${when(a.download_expires_at)}${a.missing ? `; ${a.missing} videos could not be found` : ""})`);
    } else if (a.state === "succeeded") {
      li.append(" The link has expired: ask for the archive again for a new one.");
    }
    return li;
  }));
  if (items.some((z) => z.attributes.state === "queued" || z.attributes.state === "running")) {
    zipWaiting = true;
    zipTimer = setTimeout(() => zips().catch((e) => say(message(e), "error")), 2000);
  } else if (zipWaiting) {
    zipWaiting = false;
    await access();   // handing out the link was logged
  }
}
document.getElementById("zip-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  try {
    await request("POST", `/api/v1/studies/${id}/video-zips/`, {
      data: { type: "video-zips", attributes: { consent_only: document.getElementById("zip-consent").checked } } });
    say("The archive is being made; its link will appear below.");
  } catch (e) {
    // 409: the same archive is already on its way; it is in the list.
    if (!(e instanceof ApiError) || e.status !== 409) { say(message(e), "error"); return; }
    say(message(e));
  }
  await zips();
  await access();
});

// ---- messages to families
const KINDS = { study_updates: "News about this study", next_session: "The next session",
  response_questions: "A question about a session", new_studies: "New studies" };
const messages = pagedList(document.getElementById("messages-pager"), `/api/v1/researcher/studies/${id}/messages/`,
  (items) => {
    document.getElementById("messages-empty").hidden = items.length > 0;
    fillRows(document.querySelector("#messages tbody"), items, (m) => [
      when(m.attributes.created_at), KINDS[m.attributes.kind] || m.attributes.kind, m.attributes.subject,
      String(m.attributes.recipients), String(m.attributes.emailed),
    ]);
  }, { pageSize: 10 });
const messageForm = document.getElementById("message-form");
messageForm.addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const f = messageForm.elements;
  try {
    const doc = await request("POST", `/api/v1/researcher/studies/${id}/messages/`, {
      data: { type: "messages", attributes: { kind: f.kind.value, subject: f.subject.value, body: f.body.value, all: true } } });
    const a = doc.data.attributes;
    say(`Message sent to ${a.recipients} ${a.recipients === 1 ? "family" : "families"} (${a.emailed} by email).`);
    messageForm.reset();
    await messages();
  } catch (e) {
    say(message(e), "error");
  }
});

// ---- access log
const access = pagedList(document.getElementById("access-pager"), `/api/v1/researcher/studies/${id}/access-log/`,
  (items) => fillRows(document.querySelector("#access tbody"), items, (l) => [
    when(l.attributes.created_at), l.attributes.user_email, l.attributes.action, l.attributes.object || "",
  ]));

try {
  const s = (await get(`/api/v1/researcher/studies/${id}/`)).data;
  document.getElementById("title").textContent = `${s.attributes.name}: responses and data`;
  document.title = `${s.attributes.name}: responses and data – studyhub`;
  await guarded(() => consent("&state=pending"), "consent-title");
  await guarded(responses, "responses-title");
  await guarded(zips, "zips-title");
  await guarded(messages, "messages-title");
  await guarded(access, "access-title");
} catch (e) {
  say(message(e), "error");
}
