// verify.js: the page the confirmation email links to
// (/accounts/verify/<token>/): sends the token to the API, and offers a new
// link when it is old or used.
import { notice, onSubmit, request, setupPage } from "/js/api.js";

await setupPage();
const status = document.getElementById("status");
const form = document.getElementById("verify");
const token = location.pathname.split("/").filter(Boolean).pop();

try {
  await request("POST", "/api/v1/accounts/verify/", { token });
  notice(status, "Thank you: your email address is confirmed. You can now log in.", "success");
  document.getElementById("next").hidden = false;
} catch (e) {
  notice(status, e.message);
  form.hidden = false;
}

onSubmit(form, async (v) => {
  await request("POST", "/api/v1/accounts/verify/resend/", { email: v.email || "" });
  form.hidden = true;
  notice(status, "If that address has an account waiting for confirmation, we have sent it a new link.", "success");
});
