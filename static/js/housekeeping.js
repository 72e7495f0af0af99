// housekeeping.js: the study page's care of its responses (issue 18):
// the check of the hashed child ids at the study's hash length (a
// warning at the top of the page when it is too short), and deleting
// every preview response with its videos.
import { ApiError, get, request } from "/js/api.js";
import { message } from "/js/research.js";

async function hashCheck(id) {
  const summary = document.getElementById("hash-summary");
  const warning = document.getElementById("hash-warning");
  let a;
  try {
    a = (await get(`/api/v1/researcher/studies/${id}/hash-check/`)).data.attributes;
  } catch (e) {
    summary.textContent = `The hashed child ids cannot be checked: ${message(e)}`;
    return;
  }
  summary.textContent = `Hashed child ids: ${a.hash_digits} characters for ${a.children} children`
    + ` (${a.distinct_ids} different ids, ${a.colliding_children} children sharing one).`;
  warning.hidden = !a.too_short;
  if (a.too_short) {
    warning.textContent = a.colliding_children > 0
      ? `${a.colliding_children} children of this study share a hashed child id: in the data they cannot be told apart. `
        + `Use at least ${Math.max(a.digits_needed, a.hash_digits + 1)} characters.`
      : `The hashed child ids are too short for ${a.children} children: two may soon share one. `
        + `Use at least ${a.digits_needed} characters.`;
  }
}

/** Sets up the study page's housekeeping section; say(text, kind) is
 *  the page's notice. */
export function housekeeping(id, say) {
  document.getElementById("analytics-link").href = `/researcher/studies/${id}/analytics/`;
  const button = document.getElementById("delete-previews");
  button.addEventListener("click", async () => {
    const sure = document.getElementById("delete-previews-sure");
    if (!sure.checked) {
      say("Tick the box to say you mean it, then press the button again.", "error");
      sure.focus();
      return;
    }
    button.disabled = true;
    try {
      const doc = await request("DELETE", `/api/v1/researcher/studies/${id}/preview-responses/`);
      const a = doc.data.attributes;
      say(`Deleted ${a.responses_deleted} preview responses and ${a.videos_deleted} videos.`);
      sure.checked = false;
      await hashCheck(id);
    } catch (e) {
      say(e instanceof ApiError ? message(e) : String(e), "error");
    } finally {
      button.disabled = false;
    }
  });
  hashCheck(id).finally(() => { document.body.dataset.housekeeping = "ready"; });
}
