// two-factor.js: enrolment in two-factor authentication (TOTP) with a QR
// code drawn in the page from the otpauth URI (uqr encodes it; the SVG is
// built with DOM calls, so the strict CSP needs no inline style), then the
// recovery codes, shown once.  Researcher pages send a session that is not
// two-factor verified here, with ?next= to go back to.
import { nextPath, notice, onSubmit, request, setupPage } from "/js/api.js";
import { el } from "/js/research.js";
import { encode } from "/vendor/uqr@0.1.3/dist/index.mjs";

const account = await setupPage({ requireLogin: true });
const show = (id) => {
  for (const s of ["start", "enrol", "codes-box", "relogin", "on"]) {
    document.getElementById(s).hidden = s !== id;
  }
};
const next = nextPath("/researcher/");
document.getElementById("continue").href = next;

/** The QR code of text as an SVG of one path (a square per dark module). */
function qrSvg(text) {
  const { data, size } = encode(text, { ecc: "M", border: 2 });
  const NS = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(NS, "svg");
  svg.setAttribute("viewBox", `0 0 ${size} ${size}`);
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", "QR code of the two-factor key");
  svg.setAttribute("shape-rendering", "crispEdges");
  let d = "";
  data.forEach((row, y) => row.forEach((dark, x) => { if (dark) d += `M${x} ${y}h1v1h-1z`; }));
  const path = document.createElementNS(NS, "path");
  path.setAttribute("d", d);
  path.setAttribute("fill", "#000");
  svg.append(path);
  return svg;
}

function showCodes(codes) {
  document.getElementById("codes").replaceChildren(...codes.map((c) => el("li", {}, c)));
  show("codes-box");
  document.getElementById("codes-title").focus?.();
}

const a = account.attributes;
if (!a.two_factor_enabled) show("start");
else if (!a.two_factor_verified) show("relogin");
else {
  show("on");
  document.getElementById("left").textContent =
    `You have ${a.two_factor.recovery_codes_left} unused recovery codes.`;
}

document.getElementById("begin").addEventListener("click", async () => {
  const doc = await request("POST", "/api/v1/accounts/totp/");
  const t = doc.data.attributes;
  document.getElementById("qr").replaceChildren(qrSvg(t.otpauth_uri));
  document.getElementById("secret").textContent = t.secret;
  show("enrol");
  document.getElementById("code").focus();
});

onSubmit(document.getElementById("confirm"), async (v) => {
  const doc = await request("POST", "/api/v1/accounts/totp/confirm/", { code: (v.code || "").trim() });
  notice(document.getElementById("done"), "Two-factor authentication is on.", "success");
  showCodes(doc.data.attributes.recovery_codes);
});

onSubmit(document.getElementById("new-codes"), async (v) => {
  const doc = await request("POST", "/api/v1/accounts/totp/recovery-codes/", { code: (v.code || "").trim() });
  notice(document.getElementById("done"), "Your old recovery codes no longer work.", "success");
  showCodes(doc.data.attributes.recovery_codes);
});
