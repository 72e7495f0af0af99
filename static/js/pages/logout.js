// logout.js: ends the session (POST /api/v1/auth/logout/) as soon as the
// page opens: the "Log out" link is the request.
import { notice, request, setupPage } from "/js/api.js";

const status = document.getElementById("status");
try {
  await request("POST", "/api/v1/auth/logout/");
  notice(status, "You are logged out.", "success");
} catch (e) {
  notice(status, e.status === 401 ? "You are logged out." : e.message, e.status === 401 ? "success" : "");
}
await setupPage();
