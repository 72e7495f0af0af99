// reset-confirm.js: the page the password-reset email links to
// (/accounts/password-reset/<token>/): a new password, sent with the token.
import { notice, onSubmit, request, setupPage } from "/js/api.js";

await setupPage();
const form = document.getElementById("confirm");
const token = location.pathname.split("/").filter(Boolean).pop();

onSubmit(form, async (v) => {
  if (v.password !== v.password2) {
    throw [{ field: "password2", detail: "The two passwords are not the same." }];
  }
  await request("POST", "/api/v1/accounts/password-reset/confirm/", {
    token,
    password: v.password || "",
  });
  form.hidden = true;
  const done = document.getElementById("done");
  notice(done, "Your password is changed. ", "success");
  const a = document.createElement("a");
  a.href = "/login/";
  a.textContent = "Log in with it";
  done.append(a);
});
