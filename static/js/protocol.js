// protocol.js: checks a study protocol (the runner's JSON structure) as
// the researcher types, and says where the first error is by line and
// column, so a missing comma is found without a round trip.

/** The line and column of offset pos in text (both from 1). */
export function lineCol(text, pos) {
  const before = text.slice(0, pos).split("\n");
  return { line: before.length, column: before[before.length - 1].length + 1 };
}

/**
 * null when text is a valid protocol, else { message, line, column }.
 * The shape is the one the server checks: an object whose "frames" is an
 * object and "sequence" a list.
 */
export function checkProtocol(text) {
  if (!text.trim()) return { message: "The protocol is empty: write at least {}.", line: 1, column: 1 };
  let value;
  try {
    value = JSON.parse(text);
  } catch (e) {
    const msg = String(e.message);
    const at = /position (\d+)/.exec(msg);
    const lc = /line (\d+) column (\d+)/.exec(msg);
    let where = at ? lineCol(text, Number(at[1])) : { line: 0, column: 0 };
    if (lc) where = { line: Number(lc[1]), column: Number(lc[2]) };
    if (!at && !lc) where = lineCol(text, text.length);   // ran out of text
    const what = msg.replace(/^JSON\.parse: /, "").replace(/\s*\(line \d+ column \d+\)/, "")
      .replace(/ in JSON at position \d+/, "");
    return { message: `Not valid JSON: ${what}.`, ...where };
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    return { message: "The protocol must be a JSON object ({ ... }).", line: 1, column: 1 };
  }
  const line = (key) => {
    const i = text.indexOf(`"${key}"`);
    return i < 0 ? { line: 1, column: 1 } : lineCol(text, i);
  };
  if ("frames" in value && (value.frames === null || typeof value.frames !== "object" || Array.isArray(value.frames))) {
    return { message: '"frames" must be an object of frames by name.', ...line("frames") };
  }
  if ("sequence" in value && !Array.isArray(value.sequence)) {
    return { message: '"sequence" must be a list of frame names.', ...line("sequence") };
  }
  if (Array.isArray(value.sequence) && value.frames) {
    for (const name of value.sequence) {
      if (typeof name === "string" && !(name in value.frames)) {
        return { message: `"sequence" names the frame "${name}", which "frames" does not have.`, ...line("sequence") };
      }
    }
  }
  return null;
}
