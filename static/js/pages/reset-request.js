// reset-request.js: asks for a password-reset email.  The answer is the
// same whether or not the address has an account.
import { notice, onSubmit, request, setupPage } from "/js/api.js";

await setupPage();
const form = document.getElementById("reset");

onSubmit(form, async (v) => {
  await request("POST", "/api/v1/accounts/password-reset/", { email: v.email || "" });
  form.hidden = true;
  notice(document.getElementById("done"),
    `If ${v.email} has an account, we have sent it a link to choose a new password. The link works for one hour.`,
    "success");
});
