// login.js: email and password; when the account has two-step
// verification the server answers 202 with a challenge, and the second
// form sends the code with it (POST /api/v1/auth/login/2fa/).
import { nextPath, onSubmit, request, setupPage } from "/js/api.js";

const account = await setupPage();
if (account) location.replace(nextPath("/"));

const first = document.getElementById("login");
const second = document.getElementById("second-step");
let challenge = "";

onSubmit(first, async (v) => {
  const doc = await request("POST", "/api/v1/auth/login/", {
    email: v.email || "",
    password: v.password || "",
  });
  if (doc.status === 202 && doc.meta && doc.meta.second_factor_required) {
    challenge = doc.meta.challenge;
    first.hidden = true;
    second.hidden = false;
    document.getElementById("code").focus();
    return;
  }
  location.assign(nextPath("/"));
});

onSubmit(second, async (v) => {
  const code = (v.code || "").replace(/\s+/g, "");
  // Six digits are a code from the app; anything else a recovery code.
  const body = /^\d{6}$/.test(code) ? { challenge, code } : { challenge, recovery_code: code };
  await request("POST", "/api/v1/auth/login/2fa/", body);
  location.assign(nextPath("/"));
});
