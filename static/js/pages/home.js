// home.js: the home page; a signed-in family sees its links, others the
// way to sign up.
import { setupPage } from "/js/api.js";

const account = await setupPage();
if (account) {
  document.getElementById("welcome").textContent = `Welcome back, ${account.attributes.email}.`;
}
