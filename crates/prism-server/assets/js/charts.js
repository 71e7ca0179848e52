// The analysis of a rollout: per metric, a small chart of each cluster's measured value over
// time (the incumbent's, when compared against it, dashed), points marked by verdict, and the
// latest verdict per cluster in words beside it.
import { badge, h, s, when } from "./dom.js";

const WIDTH = 420;
const HEIGHT = 170;
const PAD = { left: 64, right: 12, top: 12, bottom: 26 };
// Series colours, apart from the verdict colours (green, red, amber) of the points.
const SERIES = ["#5aa9ff", "#c38bff", "#35d0c0", "#ff9f5a", "#f06fb0", "#c9d36a"];

export function analysisSection(analysis) {
  const results = (analysis && analysis.results) || [];
  const metrics = groupBy(results, (result) => result.metric);
  return h("section", { class: "panel", "aria-labelledby": "analysis-title", "data-testid": "analysis" },
    h("h2", { id: "analysis-title" }, "Analysis"),
    analysis
      ? h("p", { class: "analysis-summary" },
        `Step ${analysis.step + 1}: `,
        h("span", { class: "tone-text-ok" }, `${analysis.passed} passed`), ", ",
        h("span", { class: analysis.failed ? "tone-text-bad" : "" }, `${analysis.failed} failed`), ", ",
        h("span", { class: analysis.inconclusive ? "tone-text-warn" : "" }, `${analysis.inconclusive} inconclusive`))
      : h("p", { class: "empty" }, "No analysis for this rollout."),
    metrics.size
      ? [
        h("p", { class: "chart-key muted" },
          h("span", { class: "tone-text-ok" }, "●"), " passed · ",
          h("span", { class: "tone-text-bad" }, "✕"), " failed · ",
          h("span", { class: "tone-text-warn" }, "○"), " inconclusive · dashed line: the incumbent"),
        h("div", { class: "charts" }, [...metrics].map(([metric, rows]) => metricChart(metric, rows))),
      ]
      : null);
}

function metricChart(metric, rows) {
  const clusters = [...groupBy(rows, (row) => row.cluster)];
  const colour = new Map(clusters.map(([cluster], index) => [cluster, SERIES[index % SERIES.length]]));
  const times = rows.map((row) => Date.parse(row.time));
  const values = rows.flatMap((row) => [row.value, row.incumbent]).filter((v) => v !== null && v !== undefined);
  const [t0, t1] = spread(Math.min(...times), Math.max(...times), 1000);
  const [v0, v1] = values.length ? spread(Math.min(...values), Math.max(...values), Math.abs(values[0]) * 0.1 || 1) : [0, 1];
  const x = (time) => PAD.left + ((time - t0) / (t1 - t0)) * (WIDTH - PAD.left - PAD.right);
  const y = (value) => HEIGHT - PAD.bottom - ((value - v0) / (v1 - v0)) * (HEIGHT - PAD.top - PAD.bottom);

  const series = clusters.map(([cluster, points]) => {
    const sorted = [...points].sort((a, b) => Date.parse(a.time) - Date.parse(b.time));
    const line = (field) => sorted.filter((p) => p[field] !== null && p[field] !== undefined)
      .map((p) => `${x(Date.parse(p.time)).toFixed(1)},${y(p[field]).toFixed(1)}`).join(" ");
    return s("g", { "data-key": `series-${cluster}` },
      s("polyline", { points: line("incumbent"), class: "series incumbent", stroke: colour.get(cluster) }),
      s("polyline", { points: line("value"), class: "series", stroke: colour.get(cluster) }),
      sorted.filter((p) => p.value !== null && p.value !== undefined)
        .map((p) => verdictMark(x(Date.parse(p.time)), y(p.value), p, cluster)));
  });

  const label = `${metric}: ${clusters.length} cluster${clusters.length === 1 ? "" : "s"}, ${rows.length} measurements`;
  return h("figure", { class: "chart", "data-testid": `analysis-${metric}`, "data-key": `metric-${metric}` },
    h("figcaption", {}, metric),
    s("svg", { viewBox: `0 0 ${WIDTH} ${HEIGHT}`, role: "img", "aria-label": label },
      s("line", { class: "axis", x1: PAD.left, x2: WIDTH - PAD.right, y1: HEIGHT - PAD.bottom, y2: HEIGHT - PAD.bottom }),
      s("line", { class: "axis", x1: PAD.left, x2: PAD.left, y1: PAD.top, y2: HEIGHT - PAD.bottom }),
      s("text", { class: "tick", x: PAD.left - 6, y: PAD.top + 4, "text-anchor": "end" }, number(v1)),
      s("text", { class: "tick", x: PAD.left - 6, y: HEIGHT - PAD.bottom, "text-anchor": "end" }, number(v0)),
      s("text", { class: "tick", x: PAD.left, y: HEIGHT - 6 }, clock(t0)),
      s("text", { class: "tick", x: WIDTH - PAD.right, y: HEIGHT - 6, "text-anchor": "end" }, clock(t1)),
      series),
    h("ul", { class: "legend" }, clusters.map(([cluster, points]) => legendItem(cluster, points, colour.get(cluster)))));
}

// Pass: a filled dot; Fail: a cross; Inconclusive: a hollow dot. Shape and colour both tell.
function verdictMark(cx, cy, point, cluster) {
  const title = s("title", {}, `${cluster} ${when(point.time)}: ${number(point.value)}` +
    `${point.incumbent !== null && point.incumbent !== undefined ? ` (incumbent ${number(point.incumbent)})` : ""}` +
    ` — ${point.verdict}${point.message ? `: ${point.message}` : ""}`);
  if (point.verdict === "Fail") {
    const d = 5;
    return s("path", { class: "mark failed", d: `M${cx - d},${cy - d}L${cx + d},${cy + d}M${cx - d},${cy + d}L${cx + d},${cy - d}` }, title);
  }
  const kind = point.verdict === "Pass" ? "passed" : "inconclusive";
  return s("circle", { class: `mark ${kind}`, cx: cx.toFixed(1), cy: cy.toFixed(1), r: 4 }, title);
}

function legendItem(cluster, points, colour) {
  const latest = [...points].sort((a, b) => Date.parse(b.time) - Date.parse(a.time))[0];
  return h("li", { "data-key": `legend-${cluster}` },
    h("span", { class: "swatch", style: `background: ${colour}` }),
    h("strong", {}, cluster), " ",
    number(latest.value),
    latest.incumbent !== null && latest.incumbent !== undefined ? h("span", { class: "muted" }, ` vs ${number(latest.incumbent)} incumbent`) : null,
    " ", badge(latest.verdict, { title: latest.message || "" }));
}

function groupBy(items, keyOf) {
  const groups = new Map();
  for (const item of items) {
    const key = keyOf(item);
    if (!groups.has(key)) groups.set(key, []);
    groups.get(key).push(item);
  }
  return groups;
}

// A range that is never empty, so a single point or a flat series still has a place.
function spread(low, high, minimum) {
  if (high - low > 0) {
    const margin = (high - low) * 0.08;
    return [low - margin, high + margin];
  }
  return [low - minimum, high + minimum];
}

function number(value) {
  if (value === null || value === undefined) return "—";
  if (value === 0) return "0";
  const magnitude = Math.abs(value);
  if (magnitude >= 1000 || magnitude < 0.001) return value.toExponential(2);
  return String(Number(value.toPrecision(3)));
}

function clock(time) {
  return new Date(time).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
}
