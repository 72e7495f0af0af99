// support.js: the support form.  The server checks the fields, limits how
// often one address may write, and queues the email to the support team.
import { notice, onSubmit, post, setupPage } from "/js/api.js";

const account = await setupPage();
const form = document.getElementById("support");
const done = document.getElementById("done");

if (account && account.attributes && account.attributes.email) {
  form.elements.namedItem("email").value = account.attributes.email;
}
onSubmit(form, async (values) => {
  const doc = await post("/api/v1/support/", "support-messages", values);
  form.reset();
  notice(done, (doc.meta && doc.meta.detail) || "Your message was sent.", "success");
  done.focus();
});
