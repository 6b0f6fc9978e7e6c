// The dashboard's shell: the key (asked for once, kept in this tab's sessionStorage), the views by
// the URL's fragment (#/compare?kind=app&a=…; never the key), and the theme.
import { api, forgetKey, saveKey, savedKey, Unauthorised } from "./api.js";
import { compareView, timeseriesView, winnerView } from "./deciding.js";
import { el, zone } from "./format.js";
import { alertsView, experimentsView } from "./later.js";
import { runsView, traceView } from "./runs.js";
import { promptsView, promptView, versionsView } from "./versions.js";

const view = document.getElementById("view");
const dialog = document.getElementById("key-dialog");
const keyInput = document.getElementById("key");
const keyError = document.getElementById("key-error");
let rendering = 0;

function parseHash() {
  const [path, search] = location.hash.replace(/^#\/?/, "").split("?");
  return { parts: path.split("/").filter(Boolean).map(decodeURIComponent), params: new URLSearchParams(search || "") };
}

/** Go to a view with these parameters (empty ones dropped). */
function go(path, params = {}) {
  const q = new URLSearchParams(Object.entries(params).filter(([, v]) => v !== undefined && v !== null && v !== ""));
  const hash = `#/${path}${q.toString() ? `?${q}` : ""}`;
  if (location.hash === hash) render();
  else location.hash = hash;
}

const VIEWS = {
  "": (parts, params) => versionsView(params, go),
  prompts: () => promptsView(),
  prompt: (parts, params) => promptView(parts[1], params, go),
  timeseries: (parts, params) => timeseriesView(params, go),
  compare: (parts, params) => compareView(params, go),
  winner: (parts, params) => winnerView(params, go),
  runs: (parts, params) => (parts[1] ? traceView(parts[1]) : runsView(params, go)),
  experiments: () => experimentsView(),
  alerts: () => alertsView(),
};

async function render() {
  if (!savedKey()) return askForKey();
  const ticket = ++rendering;
  const { parts, params } = parseHash();
  const name = parts[0] ?? "";
  const active = name === "prompt" ? "prompts" : name || "versions";
  for (const a of document.querySelectorAll("#nav a")) a.classList.toggle("active", a.dataset.view === active);
  const build = VIEWS[name];
  view.dataset.state = "loading";
  view.replaceChildren(el("p", { class: "muted" }, "Loading…"));
  try {
    const nodes = build ? await build(parts, params) : [el("h1", {}, "Not found"), el("p", {}, el("a", { href: "#/" }, "Back to the versions"))];
    if (ticket !== rendering) return;
    view.replaceChildren(...nodes.flat().filter(Boolean));
    view.dataset.state = "ready";
    performance.mark("vane:data"); // time to data, which tests/bench/bench_dashboard.py reads
  } catch (error) {
    if (ticket !== rendering) return;
    if (error instanceof Unauthorised) {
      forgetKey();
      return askForKey(`Your key was refused: ${error.message}. Sign in again.`);
    }
    view.replaceChildren(el("p", { class: "error", id: "view-error" }, `Could not load this view: ${error.message}`));
    view.dataset.state = "error";
  }
}

function askForKey(message = "") {
  keyError.textContent = message;
  document.getElementById("signout").hidden = true;
  document.getElementById("project").textContent = "";
  if (!dialog.open) dialog.showModal();
  keyInput.focus();
}

async function signIn(key) {
  const project = await api("/api/v1/projects/current", { key });
  saveKey(key);
  document.getElementById("project").textContent = `project ${project.name}`;
  document.getElementById("signout").hidden = false;
}

document.getElementById("key-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const key = keyInput.value.trim();
  keyError.textContent = "Checking…";
  try {
    await signIn(key);
    keyInput.value = "";
    dialog.close();
    render();
  } catch (error) {
    keyError.textContent =
      error instanceof Unauthorised
        ? `That key was refused (${error.message}). Use the secret key (sk-vane-…) that vane up or vane projects create printed.`
        : `Could not check the key: ${error.message}`;
  }
});
dialog.addEventListener("cancel", (event) => event.preventDefault()); // nothing to show without a key

document.getElementById("signout").addEventListener("click", () => {
  forgetKey();
  view.replaceChildren();
  askForKey();
});

const THEME = "vane.theme";
function applyTheme(theme) {
  if (theme) document.documentElement.dataset.theme = theme;
  else delete document.documentElement.dataset.theme;
}
applyTheme(localStorage.getItem(THEME));
document.getElementById("theme").addEventListener("click", () => {
  const dark = document.documentElement.dataset.theme
    ? document.documentElement.dataset.theme === "dark"
    : matchMedia("(prefers-color-scheme: dark)").matches;
  const next = dark ? "light" : "dark";
  localStorage.setItem(THEME, next);
  applyTheme(next);
  render();
});

document.getElementById("zone").textContent = `Times are in your time zone (${zone}).`;
window.addEventListener("hashchange", render);

(async () => {
  const key = savedKey();
  if (!key) return askForKey();
  render(); // at once, beside the key's check: a refused key stops both at the dialog
  try {
    await signIn(key);
  } catch (error) {
    if (!(error instanceof Unauthorised)) return;
    forgetKey();
    rendering++;
    askForKey("Your saved key was refused: sign in again.");
  }
})();
