// Numbers with their units, times in the reader's own zone.
const numberFormat = new Intl.NumberFormat(undefined, { maximumFractionDigits: 1 });
const integerFormat = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });
const dateFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });

export const zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
export const DASH = "–";

export function count(v) {
  return v === null || v === undefined ? DASH : integerFormat.format(v);
}

export function ms(v) {
  if (v === null || v === undefined) return DASH;
  return v >= 10000 ? `${numberFormat.format(v / 1000)} s` : `${integerFormat.format(v)} ms`;
}

export function tokens(v) {
  return v === null || v === undefined ? DASH : `${integerFormat.format(v)} tok`;
}

export function usd(v) {
  if (v === null || v === undefined) return DASH;
  const digits = Math.abs(v) >= 1 ? 2 : Math.abs(v) >= 0.01 ? 4 : 6;
  return `${v < 0 ? "-" : ""}$${Math.abs(v).toFixed(digits)}`;
}

export function pct(v) {
  return v === null || v === undefined ? DASH : `${numberFormat.format(v * 100)} %`;
}

export function score(v) {
  if (v === null || v === undefined) return DASH;
  return Number.isInteger(v) ? String(v) : v.toFixed(3);
}

export function pValue(v) {
  if (v === null || v === undefined) return DASH;
  return v < 0.0001 ? "< 0.0001" : v.toFixed(4);
}

export function when(iso) {
  return iso ? dateFormat.format(new Date(iso)) : DASH;
}

/** How a METRIC's value reads: its unit follows from its name. */
export function metricValue(metric, v) {
  if (v === null || v === undefined) return DASH;
  if (metric.endsWith("latency_ms") || metric.endsWith("ttft_ms")) return ms(v);
  if (metric.includes("cost")) return usd(v);
  if (metric.endsWith("tokens")) return tokens(v);
  if (metric.endsWith("error_rate")) return pct(v);
  return score(v);
}

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(node.dataset, v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** An empty state: what is missing and what to do next. */
export function empty(title, ...body) {
  return el("div", { class: "empty" }, el("h2", {}, title), ...body.map((p) => (p instanceof Node ? p : el("p", {}, p))));
}
