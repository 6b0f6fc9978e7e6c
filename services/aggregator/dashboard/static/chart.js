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
          const right = u.bbox.left + u.bbox.width;
          const line = 13 * devicePixelRatio;
          let lastX = -Infinity;
          let stacked = 0;
          const placed = markers
            .map((m) => ({ m, x: u.valToPos(Date.parse(m.at) / 1000, "x", true) }))
            .sort((a, b) => a.x - b.x);
          for (const { m, x } of placed) {
            if (x < u.bbox.left - 1 || x > right + 1) continue;
            // markers within a few pixels share one line, their labels stacked under each other
            stacked = x - lastX < 6 * devicePixelRatio ? stacked + 1 : 0;
            if (stacked === 0) {
              ctx.beginPath();
              ctx.moveTo(x, top);
              ctx.lineTo(x, top + height);
              ctx.stroke();
              lastX = x;
            }
            const text = markerText(m);
            const width = ctx.measureText(text).width;
            const leftOfLine = x + 4 * devicePixelRatio + width > right;
            ctx.textAlign = leftOfLine ? "right" : "left";
            ctx.fillText(text, leftOfLine ? x - 4 * devicePixelRatio : x + 4 * devicePixelRatio, top + line * (stacked + 1));
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
    performance.mark("vane:chart");
    box.plot = plot;
  });
  return box;
}
