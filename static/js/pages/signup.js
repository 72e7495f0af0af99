// signup.js: create an account; the server emails a confirmation link
// (to /accounts/verify/<token>/) and answers the same whether or not the
// address already has an account.
import { notice, onSubmit, request, setupPage } from "/js/api.js";

await setupPage();
const form = document.getElementById("signup");

onSubmit(form, async (v) => {
  if (v.password !== v.password2) {
    throw [{ field: "password2", detail: "The two passwords are not the same." }];
  }
  await request("POST", "/api/v1/accounts/signup/", {
    email: v.email || "",
    password: v.password || "",
    nickname: v.nickname || null,
  });
  form.hidden = true;
  notice(document.getElementById("done"),
    `We have sent an email to ${v.email}. Open the link in it to confirm your address, then log in.`,
    "success");
  document.getElementById("done").focus();
});
