// doozer WebView: shows the store (or one subtree of it) and keeps it current
// through the read API of the node that served the page (/v1/..., same origin).
// See docs/webview.md.
//
// The page's script is these ES modules, loaded by the browser as they are
// (index.html: <script type="module">; no build step):
//   common.js   constants, DOM helpers, the page's state (S)
//   model.js    the tree model: a walk's result, then watch events, applied
//   network.js  the read API, the main loop (load -> watch), reconnection
//   status.js   status and banner, messages, breadcrumbs, secret
//   health.js   members (voting, applied rev), fault tolerance, leases
//   history.js  the tree as of an old rev, and the changes between two
//   view.js     the rows (virtual scrolling) and the detail dialog
//   app.js      (this) wiring: the UI's events, timers, the start

import { $, CLUSTER_EVERY, COMPONENT, S, session } from "./common.js";
import { files, findDir, hooks, resetTree, setAllOpen } from "./model.js";
import { initHistory } from "./history.js";
import { refreshHealth, run } from "./network.js";
import { message, renderCrumbs, updateBanner } from "./status.js";
import { scheduleRender, showDetail } from "./view.js";

hooks.scheduleRender = scheduleRender;
hooks.detailChanged = (path) => showDetail(path, false);

// ---------------------------------------------------------------- secret

$("auth-form").addEventListener("submit", (ev) => {
  const secret = $("secret").value;
  if (!secret || /[^\x20-\x7e]/.test(secret)) {
    // HTTP headers carry printable ASCII only.
    ev.preventDefault();
    $("auth-error").textContent = "A secret is printable ASCII characters.";
    $("auth-error").hidden = false;
    return;
  }
  S.secret = secret;
  session("set", secret);
  $("auth").close();
  run();
});
$("auth").addEventListener("cancel", (ev) => ev.preventDefault());

$("forget-secret").addEventListener("click", () => {
  S.secret = null;
  session("remove");
  location.reload();
});

// ------------------------------------------------------------ status UI

setInterval(() => { if (S.state === "disconnected") updateBanner(); }, 500);

$("retry-now").addEventListener("click", () => {
  if (S.wake) S.wake();
  else if (S.state === "error") run();
});

// ------------------------------------------------------------ the tree

$("detail-close").addEventListener("click", () => $("detail").close());
$("detail").addEventListener("close", () => { S.detailPath = null; });
$("detail").addEventListener("click", (ev) => { if (ev.target === $("detail")) $("detail").close(); });

$("rows").addEventListener("click", (ev) => {
  const rowEl = ev.target.closest(".row");
  if (!rowEl || ev.target.closest("a")) return;
  const path = rowEl.dataset.path;
  const f = files.get(path);
  if (f) {
    if (ev.target.closest(".more") || ev.target.closest(".name")) showDetail(path, true);
    return;
  }
  const d = findDir(path);
  if (d) {
    d.open = !d.open;
    S.rowsDirty = true;
    scheduleRender();
  }
});

$("rows").addEventListener("keydown", (ev) => {
  if (ev.key !== "Enter" && ev.key !== " ") return;
  const name = ev.target.closest(".row.file .name");
  if (!name) return;
  ev.preventDefault();
  showDetail(name.closest(".row").dataset.path, true);
});

$("expand-all").addEventListener("click", () => setAllOpen(true));
$("collapse-all").addEventListener("click", () => setAllOpen(false));

let filterTimer = null;
$("filter").addEventListener("input", () => {
  clearTimeout(filterTimer);
  filterTimer = setTimeout(() => {
    S.filter = $("filter").value.trim();
    if (!S.filter) message("");
    S.rowsDirty = true;
    scheduleRender();
  }, 120);
});

window.addEventListener("scroll", scheduleRender, { passive: true });
window.addEventListener("resize", scheduleRender);
setInterval(refreshHealth, CLUSTER_EVERY);
initHistory();

// ---------------------------------------------------------------- start

function rootFromLocation() {
  const q = new URLSearchParams(location.search).get("dir");
  let p;
  try {
    p = q !== null ? q : decodeURIComponent(location.pathname);
  } catch (e) {
    return { error: "the address is not a valid store path" };
  }
  p = p.replace(/\/+$/, "");
  if (!p.startsWith("/")) p = "/" + p;
  if (p === "/" || p === "") return { path: "/" };
  const parts = p.slice(1).split("/");
  for (const c of parts) {
    if (!COMPONENT.test(c) || c === "." || c === "..") {
      return { error: "“" + p + "” is not a valid store path (components are 1–255 of A-Z a-z 0-9 . _ -)" };
    }
  }
  return { path: p };
}

const where = rootFromLocation();
S.root = where.path || "/";
S.badRoot = where.error || null;
resetTree();
S.glob = S.root === "/" ? "/**" : S.root + "/**";
renderCrumbs();
run();
