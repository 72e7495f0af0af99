// logout.js: ends the session (POST /api/v1/auth/logout/).  Coming from
// one of our own pages (the "Log out" link), the link is the request and
// the session ends at once; from anywhere else (a link on another site,
// which must not be able to log a family out) the page asks first.
import { notice, onSubmit, request, setupPage } from "/js/api.js";

const status = document.getElementById("status");
const form = document.getElementById("logout");

async function logOut() {
  try {
    await request("POST", "/api/v1/auth/logout/");
  } catch (e) {
    if (e.status !== 401) throw e;    // already logged out: the same to the family
  }
  form.hidden = true;
  notice(status, "You are logged out.", "success");
  await setupPage();
}

let fromOurPage = false;
try {
  fromOurPage = document.referrer !== "" && new URL(document.referrer).origin === location.origin;
} catch (e) {
  fromOurPage = false;
}

if (fromOurPage) {
  await logOut();
} else {
  const account = await setupPage();
  if (account) {
    notice(status, "");
    form.hidden = false;
  } else {
    notice(status, "You are logged out.", "success");
  }
}

onSubmit(form, logOut);
