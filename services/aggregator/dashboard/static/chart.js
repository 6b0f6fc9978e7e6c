// Time series on uPlot (vendored from npm: vendor/uPlot.iife.min.js), with deployment markers.
import { el, metricValue } from "./format.js";

const PALETTE = ["#2f6fde", "#e8590c", "#2b8a3e", "#ae3ec9", "#c92a2a", "#1098ad", "#5c940d", "#f08c00"];

function cssVar(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
}

/** Draws each marker as a dashed vertical line with its label move written beside it. */
function markersPlugin(markers) {
  return {
    hooks: {
      draw: [
        (u) => {
          const { ctx } = u;
          const { top, height } = u.bbox;
          ctx.save();
          ctx.strokeStyle = cssVar("--muted");
          ctx.fillStyle = cssVar("--fg");
          ctx.setLineDash([5, 4]);
          ctx.lineWidth = devicePixelRatio;
          ctx.font = `${11 * devicePixelRatio}px system-ui, sans-serif`;
          for (const m of markers) {
            const x = u.valToPos(Date.parse(m.at) / 1000, "x", true);
            if (x < u.bbox.left - 1 || x > u.bbox.left + u.bbox.width + 1) continue;
            ctx.beginPath();
            ctx.moveTo(x, top);
            ctx.lineTo(x, top + height);
            ctx.stroke();
            ctx.fillText(markerText(m), x + 4 * devicePixelRatio, top + 12 * devicePixelRatio);
          }
          ctx.restore();
        },
      ],
    },
  };
}

/** A point's figure: a ROW field, or `score:<name>` for that score's median. */
export function pointValue(point, field) {
  if (field.startsWith("score:")) return point.scores?.[field.slice(6)]?.median ?? null;
  return point[field] ?? null;
}

export function markerText(m) {
  const move = `${m.from_version ?? "∅"} → ${m.to_version ?? "∅"}`;
  return m.label ? `${m.label}: ${move}` : `first run of ${m.to_version}`;
}

/** A chart of `field` for each series ({version, points}); returns its element (uPlot draws into it). */
export function timeSeriesChart(series, markers, field, { width = 1100, height = 340 } = {}) {
  const times = [...new Set(series.flatMap((s) => s.points.map((p) => Date.parse(p.at) / 1000)))].sort((a, b) => a - b);
  const index = new Map(times.map((t, i) => [t, i]));
  const columns = series.map((s) => {
    const ys = new Array(times.length).fill(null);
    for (const p of s.points) ys[index.get(Date.parse(p.at) / 1000)] = pointValue(p, field);
    return ys;
  });
  const box = el("div", { class: "chart", id: "timeseries-chart", dataset: { markers: String(markers.length), field } });
  const axis = { stroke: cssVar("--muted"), grid: { stroke: cssVar("--line") }, ticks: { stroke: cssVar("--line") } };
  // The x range takes in every marker: a deployment after the last point still shows.
  const marks = markers.map((m) => Date.parse(m.at) / 1000);
  const xRange = (u, min, max) => [Math.min(min, ...marks), Math.max(max, ...marks)];
  const options = {
    width,
    height,
    plugins: [markersPlugin(markers)],
    scales: { x: { time: true, range: xRange } },
    axes: [axis, { ...axis, size: 80, values: (u, vals) => vals.map((v) => metricValue(field, v)) }],
    series: [
      {},
      ...series.map((s, i) => ({
        label: `version ${s.version}${s.project_name ? ` (${s.project_name})` : ""}`,
        stroke: PALETTE[i % PALETTE.length],
        width: 2,
        spanGaps: false,
        value: (u, v) => metricValue(field, v),
      })),
    ],
  };
  // uPlot measures its container: draw once the element is in the page.
  requestAnimationFrame(() => {
    box.replaceChildren();
    const plot = new window.uPlot(options, [times, ...columns], box);
    box.dataset.drawn = "true";
    box.plot = plot;
  });
  return box;
}
