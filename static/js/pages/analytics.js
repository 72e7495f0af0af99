// analytics.js: a study's (or a lab's) numbers as charts, drawn with
// uPlot from the aggregate endpoints (the server counts in SQL; this page
// never sees a response).  Every chart has its numbers in a table under
// it (what a screen reader reads) and a link to them as CSV.
import { ApiError, get, notice } from "/js/api.js";
import { el, fillRows, message, pathId, setupResearch } from "/js/research.js";
import uPlot from "/vendor/uplot@1.6.32/dist/uPlot.esm.js";

await setupResearch();
const isLab = location.pathname.startsWith("/researcher/labs/");
const scope = isLab ? "labs" : "studies";
const id = pathId(scope);
const done = document.getElementById("done");
const api = `/api/v1/researcher/${scope}/${id}/analytics/`;

document.getElementById("back").href = `/researcher/${scope}/${id}/`;
document.getElementById("back").textContent = isLab ? "Back to the lab" : "Back to the study";

const LABELS = {
  day: "Day", responses: "Responses", age_group: "Age group", from_days: "From (days)",
  to_days: "To (days)", gender: "Gender", children: "Children", families: "Families",
  measure: "Measure", value: "Value", of: "Of", percent: "Percent",
};
const GENDERS = { f: "Girl", m: "Boy", o: "Other", na: "Not given" };

/** What the chart shows of each row: [label, number]. */
function points(chart, rows) {
  switch (chart) {
    case "over-time": return rows.map((r) => [r[0], r[1]]);
    case "ages": return rows.map((r) => [r[0], r[3]]);
    case "genders": return rows.map((r) => [GENDERS[r[0]] || r[0], r[1]]);
    case "rates": return rows.map((r) => [`${r[0]}: ${r[1]}`, r[4]]);
    default: return rows.map((r) => [r[0], r[1]]);
  }
}

/** A uPlot of pts: a line over days for over-time, bars otherwise (the x
 *  axis the row's index, labelled). */
function draw(box, chart, pts, min) {
  const width = Math.max(320, Math.min(box.clientWidth || 640, 900));
  const opts = {
    width, height: 260,
    legend: { show: false },
    cursor: { show: false },
    scales: { x: { time: chart === "over-time" } },
    series: [{}, {
      label: chart === "rates" ? "Percent" : "Count",
      stroke: "#1d70b8", fill: "rgba(29,112,184,0.25)", width: 2,
      ...(chart === "over-time" ? {} : { paths: uPlot.paths.bars({ size: [0.6, 60] }), points: { show: false } }),
    }],
    axes: [{
      ...(chart === "over-time" ? {} : {
        values: (u, splits) => splits.map((i) => (Number.isInteger(i) && pts[i] ? pts[i][0] : "")),
        splits: () => pts.map((_, i) => i),
        rotate: pts.length > 6 ? -45 : 0,
        size: pts.length > 6 ? 90 : 40,
      }),
    }, {}],
  };
  const xs = chart === "over-time"
    ? pts.map((p) => Date.parse(`${p[0]}T12:00:00Z`) / 1000)
    : pts.map((_, i) => i);
  // A suppressed cell is drawn at 0 (its table row says "fewer than min").
  const ys = pts.map((p) => (p[1] === null ? 0 : Number(p[1])));
  if (chart !== "over-time") opts.scales.x = { time: false, range: [-0.5, Math.max(0.5, pts.length - 0.5)] };
  const holder = el("div", { class: "chart" });
  box.append(holder);
  return new uPlot(opts, [xs, ys], holder);
}

/** One chart: fetch, draw, table, CSV link. */
async function show(box) {
  const chart = box.dataset.chart;
  const field = chart === "demographics" ? document.getElementById("field").value : "";
  const q = field ? `?field=${encodeURIComponent(field)}` : "";
  for (const old of box.querySelectorAll(".chart, table, .csv, .empty, .notice")) old.remove();
  let doc;
  try {
    doc = await get(`${api}${chart}${q}`);
  } catch (e) {
    if (!(e instanceof ApiError) || e.status !== 403) throw e;
    box.append(el("p", { class: "notice" }, message(e)));
    return;
  }
  const a = doc.data.attributes;
  document.getElementById("min-cell").textContent = String(a.min_cell);
  const pts = points(chart, a.rows);
  const title = box.querySelector("h2").textContent;
  if (pts.length === 0) {
    box.append(el("p", { class: "empty" }, "Nothing to count yet."));
  } else {
    const plot = draw(box, chart, pts, a.min_cell);
    plot.root.setAttribute("role", "img");
    plot.root.setAttribute("aria-label", `${title}: the numbers are in the table below.`);
  }
  const table = el("table", {},
    el("caption", { class: "visually-hidden" }, `${title} (${a.counted})`),
    el("thead", {}, el("tr", {}, ...a.columns.map((c) => el("th", { scope: "col" }, LABELS[c] || c)))),
    el("tbody"));
  const breakdown = ["ages", "genders", "demographics"].includes(chart);
  fillRows(table.tBodies[0], a.rows, (r) => r.map((v, i) => {
    if (v === null && breakdown && i === r.length - 1) return `fewer than ${a.min_cell}`;
    if (chart === "genders" && i === 0) return GENDERS[v] || v;
    return v === null ? "—" : v;
  }));
  const sep = q ? "&" : "?";
  box.append(table, el("p", { class: "csv" },
    el("a", { href: `${api}${chart}${q}${sep}format=csv`, download: "" }, `Download these numbers as CSV (${title})`)));
}

async function main() {
  try {
    const who = (await get(`/api/v1/researcher/${scope}/${id}/`)).data.attributes;
    document.getElementById("title").textContent = `Analytics: ${who.name}`;
    document.title = `Analytics: ${who.name} – studyhub`;
    document.getElementById("scope-line").textContent = isLab
      ? "Every study of this lab whose responses you may read, together."
      : "This study's responses.";
  } catch (e) {
    notice(done, message(e), "error");
    return;
  }
  const boxes = [...document.querySelectorAll(".chart-box")];
  try {
    for (const box of boxes) await show(box);
  } catch (e) {
    notice(done, message(e), "error");
  }
  document.getElementById("field").addEventListener("change", () =>
    show(document.querySelector('[data-chart="demographics"]')).catch((e) => notice(done, message(e), "error")));
  document.body.dataset.ready = "true";
}

main();
