// study.js: one study's detail, the child picker and upstream's
// eligibility warning; "Take part" goes to /studies/<study>/<child>/,
// where the study's experiment runs.
import { ApiError, get, notice, setupPage } from "/js/api.js";
import { rangeText } from "/js/age.js";

const account = await setupPage();
const studyId = location.pathname.split("/")[2];
const status = document.getElementById("status");

function set(id, text, termId) {
  const el = document.getElementById(id);
  el.textContent = text || "";
  el.hidden = !text;
  if (termId) document.getElementById(termId).hidden = !text;
}

let study;
try {
  study = (await get(`/api/v1/discover/${encodeURIComponent(studyId)}/`)).data;
} catch (e) {
  document.getElementById("name").textContent = "This study is not available";
  notice(status, e instanceof ApiError && e.status === 404
    ? "The study is not open right now. See the other studies you can take part in."
    : e.message, "error");
}

if (study) {
  const a = study.attributes;
  document.title = `${a.name} – studyhub`;
  document.getElementById("name").textContent = a.name;
  if (a.image) {
    const img = document.getElementById("image");
    img.src = a.image;
    img.hidden = false;
  }
  set("short", a.short_description);
  set("ages", rangeText(a.min_age_days, a.max_age_days));
  set("criteria", a.criteria, "criteria-term");
  set("duration", a.duration);
  set("purpose", a.purpose);
  set("compensation", a.compensation_description, "compensation-term");
  set("contact", a.contact_info);
  document.getElementById("study").hidden = false;
  if (account) await picker();
}

// Upstream's warning: the study may still be done, but the data may not
// be usable (study_detail.html).
function warningFor(e) {
  const name = e.attributes.given_name;
  if (e.attributes.already_participated) {
    return `${name} has already taken part in this study. You can take part again, but the researchers may not be able to use the new answers.`;
  }
  if (e.attributes.too_young) {
    return `${name} is younger than the children this study is for. You are welcome to take part, but the researchers may not be able to use the answers.`;
  }
  if (e.attributes.too_old) {
    return `${name} is older than the children this study is for. You are welcome to take part, but the researchers may not be able to use the answers.`;
  }
  if (e.attributes.criteria_not_met) {
    return `${name} does not meet this study's criteria. You are welcome to take part, but the researchers may not be able to use the answers.`;
  }
  return "";
}

async function picker() {
  const form = document.getElementById("pick");
  const box = document.getElementById("children");
  const warning = document.getElementById("warning");
  const kids = (await get(`/api/v1/studies/${encodeURIComponent(studyId)}/eligibility/`)).data;
  if (!kids.length) {
    document.getElementById("no-children").hidden = false;
    return;
  }
  for (const [i, kid] of kids.entries()) {
    const div = document.createElement("div");
    div.className = "check";
    const input = document.createElement("input");
    input.type = "radio";
    input.name = "child";
    input.id = `child-${i}`;
    input.value = kid.id;
    if (i === 0) input.checked = true;
    const label = document.createElement("label");
    label.htmlFor = input.id;
    label.textContent = kid.attributes.given_name;
    div.append(input, label);
    box.append(div);
  }
  const update = () => {
    const chosen = kids.find((k) => k.id === form.elements.child.value) || kids[0];
    const text = warningFor(chosen);
    warning.textContent = text;
    warning.hidden = !text;
  };
  form.addEventListener("change", update);
  update();
  form.hidden = false;
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const child = form.elements.child.value || kids[0].id;
    location.assign(`/studies/${studyId}/${child}/`);
  });
}
