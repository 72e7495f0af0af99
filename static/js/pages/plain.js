// plain.js: pages with nothing of their own (404, notices): only the
// navigation that fits the visitor.
import { setupPage } from "/js/api.js";

await setupPage();
