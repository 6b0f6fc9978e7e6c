// A table whose columns sort on a click, and sparklines for its cells.
import { el } from "./format.js";

/**
 * columns: [{key, title, unit?, value(row), format?(v, row), render?(row), text?}]
 * Each cell carries data-field and, for numbers, data-value (the API's raw figure).
 */
export function sortableTable(columns, rows, { id, rowKey } = {}) {
  let sortKey = null;
  let descending = false;
  const tbody = el("tbody");
  const heads = columns.map((c) =>
    el(
      "th",
      { class: `sortable${c.text ? " text" : ""}`, dataset: { field: c.key }, title: "Sort", onclick: () => sortBy(c) },
      c.title,
      c.unit ? el("span", { class: "unit" }, ` (${c.unit})`) : null,
    ),
  );

  function sortBy(column) {
    descending = sortKey === column.key ? !descending : !column.text;
    sortKey = column.key;
    heads.forEach((h, i) => {
      h.classList.toggle("sorted-asc", columns[i].key === sortKey && !descending);
      h.classList.toggle("sorted-desc", columns[i].key === sortKey && descending);
    });
    draw();
  }

  function draw() {
    const column = columns.find((c) => c.key === sortKey);
    const ordered = [...rows];
    if (column) {
      ordered.sort((a, b) => {
        const x = column.value(a);
        const y = column.value(b);
        if (x === y) return 0;
        if (x === null || x === undefined) return 1;
        if (y === null || y === undefined) return -1;
        return (x < y ? -1 : 1) * (descending ? -1 : 1);
      });
    }
    tbody.replaceChildren(
      ...ordered.map((row) =>
        el(
          "tr",
          { dataset: { row: rowKey ? rowKey(row) : "" } },
          columns.map((c) => {
            const v = c.value(row);
            const content = c.render ? c.render(row) : c.format ? c.format(v, row) : v;
            const attrs = { class: c.text ? "text" : "", dataset: { field: c.key } };
            if (typeof v === "number") attrs.dataset.value = String(v);
            return el("td", attrs, content);
          }),
        ),
      ),
    );
  }

  draw();
  return el("div", { class: "table-wrap" }, el("table", { id }, el("thead", {}, el("tr", {}, heads)), tbody));
}

/** A small line of values (oldest first) on a canvas. */
export function sparkline(values, { width = 90, height = 22 } = {}) {
  const canvas = el("canvas", { class: "spark", width, height, title: "volume over the range" });
  const points = values.filter((v) => v !== null && v !== undefined);
  if (points.length < 2) return canvas;
  const ctx = canvas.getContext("2d");
  const max = Math.max(...points);
  const min = Math.min(...points);
  const span = max - min || 1;
  ctx.strokeStyle = getComputedStyle(document.documentElement).getPropertyValue("--accent").trim() || "#2f6fde";
  ctx.lineWidth = 1.5;
  ctx.beginPath();
  points.forEach((v, i) => {
    const x = (i / (points.length - 1)) * (width - 2) + 1;
    const y = height - 2 - ((v - min) / span) * (height - 4);
    if (i === 0) ctx.moveTo(x, y);
    else ctx.lineTo(x, y);
  });
  ctx.stroke();
  return canvas;
}
