// child-form.js: the child form shared by the add and edit pages: the
// form's values as the API's attributes, and back.

/** The API attributes from the form's values (formValues).  When adding
 *  a child, an unanswered required question is left out, so the server
 *  says it is required rather than that "" is not a date. */
export function childAttributes(v, { create = false } = {}) {
  const attrs = {
    given_name: v.given_name || "",
    birthday: v.birthday || "",
    gender: v.gender || "",
    gestational_age_at_birth: v.gestational_age_at_birth ? Number(v.gestational_age_at_birth) : null,
    language_list: v.language_list || "",
    additional_information: v.additional_information || "",
  };
  if (create) {
    for (const k of ["given_name", "birthday", "gender"]) if (!attrs[k]) delete attrs[k];
  }
  return attrs;
}

/** The weeks the API's age_at_birth label stands for ("" when not sure). */
function weeksOf(label) {
  if (label === "40 or more weeks") return "40";
  if (label === "Under 24 weeks") return "23";
  const m = /^(\d+) weeks$/.exec(label || "");
  return m ? m[1] : "";
}

/** Fills the form from a child's attributes. */
export function fillChild(form, a) {
  form.elements.given_name.value = a.given_name || "";
  form.elements.birthday.value = a.birthday || "";
  for (const r of form.querySelectorAll("input[name=gender]")) r.checked = r.value === a.gender;
  form.elements.gestational_age_at_birth.value = weeksOf(a.age_at_birth);
  form.elements.language_list.value = a.language_list || "";
  form.elements.additional_information.value = a.additional_information || "";
}
