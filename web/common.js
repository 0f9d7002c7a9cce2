// doozer WebView: what its modules share. The constants, DOM helpers, where
// the secret is kept, and the page's state (S). (app.js lists the modules.)

export const ROW_H = 26;            // px, must match .row height in style.css
export const OVERSCAN = 15;         // rows rendered above and below the viewport
export const PAGE = 1000;           // files per walk request
export const WATCH_TIMEOUT = 25;    // s, the server's long-poll timeout
export const REQUEST_SLACK = 10;    // s, on top of the long-poll, before we give up
export const REQUEST_TIMEOUT = 15;  // s, for ordinary requests
export const FLASH_MS = 2500;       // how long a changed row stays highlighted
export const BACKOFF_FIRST = 500;   // ms
export const BACKOFF_MAX = 5000;    // ms
export const SHORT = 100;           // characters of a value shown in a row
export const CLUSTER_EVERY = 2000;  // ms between /v1/cluster and /v1/leases polls
export const LEASES_SHOWN = 100;    // leases listed (the rest are counted)
export const LEASE_FILES_SHOWN = 5; // files listed per lease (the rest are counted)
const SECRET_KEY = "doozer.secret";
export const COMPONENT = /^[A-Za-z0-9._-]{1,255}$/;

export const $ = (id) => document.getElementById(id);
export const el = (tag, cls, text) => {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
};

// sessionStorage may be refused (privacy settings): then the secret lasts
// as long as the page.
export function session(op, value) {
  try {
    if (op === "get") return sessionStorage.getItem(SECRET_KEY);
    if (op === "set") sessionStorage.setItem(SECRET_KEY, value);
    else sessionStorage.removeItem(SECRET_KEY);
  } catch (e) { /* not kept */ }
  return null;
}

// ------------------------------------------------------------------- state

export const S = {
  root: "/",             // store path this page shows
  mode: "dir",           // "dir": root is a directory; "file": a single file
  glob: "/**",
  badRoot: null,         // why the URL is not a store path
  secret: session("get"),
  state: "connecting",   // connecting | live | disconnected | auth | error | history
  gen: 0,                // bumped to abandon the running loop
  next: null,            // rev to watch from
  knownRev: 0,           // the store rev our tree reflects
  nodeId: null,          // id of the node, to notice a restart
  nodeRev: null,         // X-Doozer-Rev of the last answer
  filter: "",
  wake: null,            // resolves the backoff sleep early ("retry now")
  retryAt: 0,
  attempt: 0,
  reason: "",
  detailPath: null,      // path shown in the detail dialog
  rowsDirty: true,       // the rows must be rebuilt (the tree or the filter changed)
  view: null,            // history shown: {rev, since, counts}; null when live
  oldest: null,          // oldest rev the node still answers at (last seen)
  histGen: 0,            // bumped to abandon a history load in progress
};

