// doozer WebView: the network side. Fetches the node's read API (same
// origin), loads the tree, follows it with the long-poll watch, reconnects.
//
// Flow (see docs/webview.md):
//   load:  GET /v1/walk?glob=G&offset=K&limit=1000, paged at the rev of the
//          first page, into the tree model; next = rev + 1
//   live:  GET /v1/watch?glob=G&rev=next&timeout=25, apply the events,
//          next = response.next, again
//   lost:  any network failure -> "disconnected, retrying" with backoff; on
//          reconnection the watch resumes at next (catching up), unless the
//          node is a different process or went back in rev (reload the tree),
//          or next is older than the node's history (410 TOO_LATE: reload)
//   401:   ask for the secret, keep it in sessionStorage, send it as
//          "Authorization: Bearer <secret>"
//   health: GET /v1/cluster and GET /v1/leases every 2 s (and the leases at
//          once when the watch shows /ctl/lease change), live or not
// A history view (history.js) abandons the loop (S.gen); "live" runs it again.

import {
  BACKOFF_FIRST, BACKOFF_MAX, PAGE, REQUEST_SLACK, REQUEST_TIMEOUT, S, WATCH_TIMEOUT,
} from "./common.js";
import { renderCluster, renderLeases } from "./health.js";
import { applyEvents, replaceTree } from "./model.js";
import { askSecret, message, noteNodeRev, renderCrumbs, setState } from "./status.js";

// ------------------------------------------------------------------ errors

export class NetError extends Error {}   // no answer: node down, timeout
export class AuthNeeded extends Error {} // 401
class Superseded extends Error {}        // a newer run took over
export class HttpError extends Error {
  constructor(status, body) {
    super((body && (body.detail || body.error)) || "HTTP " + status);
    this.status = status;
    this.body = body || {};
    this.code = this.body.error || "";
  }
}

// ------------------------------------------------------------------- api

export async function api(path, params, timeoutSec) {
  const url = new URL(path, location.origin);
  for (const [k, v] of Object.entries(params || {})) url.searchParams.set(k, String(v));
  const headers = { Accept: "application/json" };
  if (S.secret) headers.Authorization = "Bearer " + S.secret;
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), (timeoutSec || REQUEST_TIMEOUT) * 1000);
  let resp, body = null;
  try {
    resp = await fetch(url, { headers, signal: ctl.signal, cache: "no-store", credentials: "omit" });
    const text = await resp.text();
    if (text) {
      try { body = JSON.parse(text); } catch (e) { body = null; }
    }
  } catch (e) {
    throw new NetError(ctl.signal.aborted ? "no answer in time" : "cannot reach the node");
  } finally {
    clearTimeout(timer);
  }
  const rev = Number(resp.headers.get("X-Doozer-Rev"));
  if (rev > 0) noteNodeRev(rev);
  if (resp.status === 401) throw new AuthNeeded();
  if (!resp.ok) throw new HttpError(resp.status, body);
  if (body === null) throw new NetError("unreadable answer from the node");
  return body;
}

function storeUrl(kind, path) {
  return "/v1/" + kind + "/" + path.replace(/^\//, "");
}

// ------------------------------------------------------------- main loop

export async function run() {
  const gen = ++S.gen;
  const live = () => { if (gen !== S.gen) throw new Superseded(); };
  let needLoad = true;
  let reconnecting = false;
  let tooLate = 0;               // TOO_LATE answers in a row
  S.attempt = 0;
  if (S.badRoot) { setState("error", S.badRoot); return; }
  setState("connecting");
  for (;;) {
    try {
      if (reconnecting) {
        // Same node process, same history? Then catch up from S.next.
        const self = await api("/v1/self");
        live();
        const now = await api("/v1/rev");
        live();
        if (self.id !== S.nodeId || now.rev < S.knownRev) {
          needLoad = true;
          message("the node restarted: tree reloaded");
        }
        reconnecting = false;
      }
      if (needLoad) {
        await load(live);
        needLoad = false;
      }
      if (S.state !== "live") { setState("live"); refreshHealth(); }
      S.attempt = 0;
      const r = await api("/v1/watch", { glob: S.glob, rev: S.next, timeout: WATCH_TIMEOUT },
                          WATCH_TIMEOUT + REQUEST_SLACK);
      live();
      tooLate = 0;
      const events = r.events || [];
      applyEvents(events);
      if (events.some((ev) => typeof ev.path === "string" && ev.path.startsWith("/ctl/lease/"))) {
        refreshLeases();
      }
      if (typeof r.next === "number" && r.next > S.next) S.next = r.next;
      S.knownRev = Math.max(S.knownRev, S.next - 1);
    } catch (e) {
      if (e instanceof Superseded || gen !== S.gen) return;
      if (e instanceof AuthNeeded) { askSecret(); return; }
      if (e instanceof HttpError && e.code === "TOO_LATE") {
        needLoad = true;
        message("missed changes older than the node's history (rev " + e.body.oldest + "): tree reloaded");
        // More than three in a row: the history is shorter than a load
        // takes; back off like after any other failure, then try again.
        if (++tooLate <= 3) continue;
      }
      if (e instanceof HttpError && e.status < 500 && e.code !== "TOO_LATE") {
        // Not something a retry will fix (a bug, or an API this page does not know).
        setState("error", e.code ? e.code + ": " + e.message : e.message);
        return;
      }
      reconnecting = reconnecting || e instanceof NetError;
      S.attempt += 1;
      const delay = Math.round(Math.min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (S.attempt - 1))
                               * (0.8 + 0.4 * Math.random()));
      S.reason = e.message;
      S.retryAt = Date.now() + delay;
      setState("disconnected");
      await new Promise((resolve) => {
        const t = setTimeout(resolve, delay);
        S.wake = () => { clearTimeout(t); resolve(); };
      });
      S.wake = null;
      if (gen !== S.gen) return;
      setState("connecting");
    }
  }
}

async function load(live) {
  if (S.root === "/") {
    S.mode = "dir";
  } else {
    try {
      const st = await api(storeUrl("stat", S.root));
      S.mode = st.dir ? "dir" : "file";
    } catch (e) {
      if (!(e instanceof HttpError && e.code === "NOENT")) throw e;
      S.mode = "dir";
    }
    live();
  }
  S.glob = S.mode === "file" ? S.root : S.root === "/" ? "/**" : S.root + "/**";
  renderCrumbs();
  const { list, rev } = await walkAll(null, live);
  const self = await api("/v1/self");
  live();
  S.nodeId = self.id;
  replaceTree(list);
  S.next = rev + 1;
  S.knownRev = rev;
  if (list.length >= PAGE) message("loaded " + list.length + " files");
}

// Every file of the page's subtree (S.glob) as of rev (null: now), a
// thousand per request, every page after the first at the first's rev.
// check() is called after each answer (it throws to abandon the walk).
export async function walkAll(at, check) {
  const list = [];
  let rev = at;
  for (let offset = 0; ; ) {
    const params = { glob: S.glob, offset, limit: PAGE };
    if (rev !== null) params.rev = rev;
    const r = await api("/v1/walk", params);
    check();
    if (rev === null) rev = r.rev;
    const got = r.files || [];
    for (const f of got) list.push(f);
    offset += got.length;
    if (got.length < PAGE) break;
    message("loading… " + list.length + " files");
  }
  return { list, rev };
}

function healthy() {
  return S.state === "live" || S.state === "history";
}

export async function refreshCluster() {
  if (!healthy()) return;
  try {
    renderCluster(await api("/v1/cluster"));
  } catch (e) {
    // The main loop notices and reports lost connections.
  }
}

export async function refreshLeases() {
  if (!healthy()) return;
  try {
    renderLeases(await api("/v1/leases"));
  } catch (e) {
    // As above.
  }
}

export function refreshHealth() {
  refreshCluster();
  refreshLeases();
}

