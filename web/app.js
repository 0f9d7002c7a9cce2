// doozer WebView: shows the store (or one subtree of it) and keeps it current
// through the read API of the node that served the page (/v1/..., same origin).
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
// Rendering: a tree of collapsible directories flattened into rows, of which
// only those in (or near) the viewport are in the DOM (virtual scrolling).
"use strict";

(() => {
  const ROW_H = 26;            // px, must match .row height in style.css
  const OVERSCAN = 15;         // rows rendered above and below the viewport
  const PAGE = 1000;           // files per walk request
  const WATCH_TIMEOUT = 25;    // s, the server's long-poll timeout
  const REQUEST_SLACK = 10;    // s, on top of the long-poll, before we give up
  const REQUEST_TIMEOUT = 15;  // s, for ordinary requests
  const FLASH_MS = 2500;       // how long a changed row stays highlighted
  const BACKOFF_FIRST = 500;   // ms
  const BACKOFF_MAX = 5000;    // ms
  const SHORT = 100;           // characters of a value shown in a row
  const CLUSTER_EVERY = 2000;  // ms between /v1/cluster polls
  const SECRET_KEY = "doozer.secret";
  const COMPONENT = /^[A-Za-z0-9._-]{1,255}$/;

  const $ = (id) => document.getElementById(id);
  const el = (tag, cls, text) => {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  };

  // sessionStorage may be refused (privacy settings): then the secret lasts
  // as long as the page.
  function session(op, value) {
    try {
      if (op === "get") return sessionStorage.getItem(SECRET_KEY);
      if (op === "set") sessionStorage.setItem(SECRET_KEY, value);
      else sessionStorage.removeItem(SECRET_KEY);
    } catch (e) { /* not kept */ }
    return null;
  }

  // ------------------------------------------------------------------ errors

  class NetError extends Error {}          // no answer: node down, timeout
  class AuthNeeded extends Error {}        // 401
  class Superseded extends Error {}        // a newer run took over
  class HttpError extends Error {
    constructor(status, body) {
      super((body && (body.detail || body.error)) || "HTTP " + status);
      this.status = status;
      this.body = body || {};
      this.code = this.body.error || "";
    }
  }

  // ------------------------------------------------------------------- state

  const S = {
    root: "/",             // store path this page shows
    mode: "dir",           // "dir": root is a directory; "file": a single file
    glob: "/**",
    badRoot: null,         // why the URL is not a store path
    secret: session("get"),
    state: "connecting",   // connecting | live | disconnected | auth | error
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
  };

  // ------------------------------------------------------------------- model

  class Dir {
    constructor(name, path, parent) {
      this.name = name;
      this.path = path;
      this.parent = parent;
      this.children = new Map();
      this.sorted = null;     // cached sorted children
      this.count = 0;         // live files below
      this.open = !(path === "/ctl" && S.root === "/");
      this.flash = 0;
    }
    sortedChildren() {
      if (this.sorted === null) {
        this.sorted = Array.from(this.children.values());
        this.sorted.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
      }
      return this.sorted;
    }
  }

  class File {
    constructor(name, path, parent) {
      this.name = name;
      this.path = path;
      this.parent = parent;
      this.rev = 0;
      this.value = "";
      this.base64 = false;
      this.flash = 0;
      this.deleted = 0;       // when it was deleted (shown struck out, then removed)
    }
  }

  let tree = new Dir("", S.root, null);
  const files = new Map();   // path -> File (deleted ones too, until purged)
  let rowsDirty = true;

  function relParts(path) {
    if (path === S.root) return [path.slice(path.lastIndexOf("/") + 1) || "/"];
    const rel = S.root === "/" ? path.slice(1) : path.slice(S.root.length + 1);
    return rel.split("/");
  }

  function childPath(dir, name) {
    if (dir === tree && S.mode === "file") return S.root;
    return (dir.path === "/" ? "" : dir.path) + "/" + name;
  }

  function addCount(node, delta) {
    for (let d = node.parent; d; d = d.parent) d.count += delta;
  }

  // Remove a node (file or directory) and everything below it.
  function removeNode(node) {
    const parent = node.parent;
    if (!parent) return;
    parent.children.delete(node.name);
    parent.sorted = null;
    if (node instanceof File) {
      files.delete(node.path);
      if (!node.deleted) addCount(node, -1);
    } else {
      const stack = [node];
      while (stack.length) {
        const d = stack.pop();
        for (const c of d.children.values()) {
          if (c instanceof File) files.delete(c.path);
          else stack.push(c);
        }
      }
      for (let d = parent; d; d = d.parent) d.count -= node.count;
    }
    node.parent = null;
    rowsDirty = true;
  }

  // Remove empty directories from dir upwards (never the view's root).
  function pruneDirs(dir) {
    while (dir && dir !== tree && dir.children.size === 0) {
      const up = dir.parent;
      removeNode(dir);
      dir = up;
    }
  }

  // The directory nearest the root that is collapsed on the way to path.
  function collapsedAncestor(node) {
    let found = null;
    for (let d = node.parent; d && d !== tree; d = d.parent) if (!d.open) found = d;
    return found;
  }

  function setFile(path, rev, value, base64, flash, now) {
    const parts = relParts(path);
    let dir = tree;
    for (let i = 0; i < parts.length - 1; i++) {
      let next = dir.children.get(parts[i]);
      if (next instanceof File) { removeNode(next); next = undefined; }
      if (!next) {
        next = new Dir(parts[i], childPath(dir, parts[i]), dir);
        dir.children.set(parts[i], next);
        dir.sorted = null;
        rowsDirty = true;
      }
      dir = next;
    }
    const name = parts[parts.length - 1];
    let f = dir.children.get(name);
    if (f instanceof Dir) { removeNode(f); f = undefined; }
    if (!f) {
      f = new File(name, path, dir);
      dir.children.set(name, f);
      dir.sorted = null;
      files.set(path, f);
      addCount(f, 1);
      rowsDirty = true;
    } else if (f.deleted) {
      f.deleted = 0;
      addCount(f, 1);
    }
    const changed = f.rev !== rev || f.value !== value || f.base64 !== base64;
    f.rev = rev;
    f.value = value;
    f.base64 = base64;
    if (flash && changed) markFlash(f, now);
    return changed;
  }

  function delFile(path, flash, now) {
    const f = files.get(path);
    if (!f || f.deleted) return;
    f.deleted = now;
    addCount(f, -1);
    if (flash) {
      markFlash(f, now);
      setTimeout(purge, FLASH_MS + 50);
    } else {
      const dir = f.parent;
      removeNode(f);
      pruneDirs(dir);
    }
  }

  function markFlash(f, now) {
    f.flash = now;
    const c = collapsedAncestor(f);
    if (c) c.flash = now;
  }

  // Drop deleted files whose highlight is over, and directories left empty.
  function purge() {
    const now = performance.now();
    let later = false;
    for (const f of Array.from(files.values())) {
      if (!f.deleted) continue;
      if (now - f.deleted >= FLASH_MS) {
        const dir = f.parent;
        removeNode(f);
        pruneDirs(dir);
      } else later = true;
    }
    if (later) setTimeout(purge, FLASH_MS);
    scheduleRender();
  }

  // Replace the whole tree with a walk's result, keeping which directories
  // are collapsed; after the first load, differences are highlighted.
  function replaceTree(list) {
    const first = files.size === 0;
    const closed = new Set();
    const open = new Set();
    (function collect(d) {
      for (const c of d.children.values()) {
        if (c instanceof Dir) { (c.open ? open : closed).add(c.path); collect(c); }
      }
    })(tree);
    const old = new Map();
    for (const f of files.values()) if (!f.deleted) old.set(f.path, f);
    tree = new Dir("", S.root, null);
    files.clear();
    const now = performance.now();
    for (const item of list) {
      const before = old.get(item.path);
      const flash = !first && (!before || before.rev !== item.rev);
      setFile(item.path, item.rev, item.value ?? "", item.encoding === "base64", flash, now);
    }
    (function restore(d) {
      for (const c of d.children.values()) {
        if (c instanceof Dir) {
          if (closed.has(c.path)) c.open = false;
          else if (open.has(c.path)) c.open = true;
          restore(c);
        }
      }
    })(tree);
    rowsDirty = true;
    scheduleRender();
  }

  function applyEvents(events) {
    const now = performance.now();
    for (const ev of events) {
      if (ev.op === "del") delFile(ev.path, true, now);
      else setFile(ev.path, ev.rev, ev.value ?? "", ev.encoding === "base64", true, now);
      if (ev.path === S.detailPath) showDetail(ev.path, false);
    }
    if (events.length) scheduleRender();
  }

  // ---------------------------------------------------------------- network

  async function api(path, params, timeoutSec) {
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

  async function run() {
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
        if (S.state !== "live") { setState("live"); refreshCluster(); }
        S.attempt = 0;
        const r = await api("/v1/watch", { glob: S.glob, rev: S.next, timeout: WATCH_TIMEOUT },
                            WATCH_TIMEOUT + REQUEST_SLACK);
        live();
        tooLate = 0;
        applyEvents(r.events || []);
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
    const list = [];
    let rev = null;
    for (let offset = 0; ; ) {
      const params = { glob: S.glob, offset, limit: PAGE };
      if (rev !== null) params.rev = rev;
      const r = await api("/v1/walk", params);
      live();
      if (rev === null) rev = r.rev;
      const got = r.files || [];
      for (const f of got) list.push(f);
      offset += got.length;
      if (got.length < PAGE) break;
      message("loading… " + list.length + " files");
    }
    const self = await api("/v1/self");
    live();
    S.nodeId = self.id;
    replaceTree(list);
    S.next = rev + 1;
    S.knownRev = rev;
    if (list.length >= PAGE) message("loaded " + list.length + " files");
  }

  async function refreshCluster() {
    if (S.state !== "live") return;
    try {
      const c = await api("/v1/cluster");
      renderCluster(c);
    } catch (e) {
      // The main loop notices and reports lost connections.
    }
  }

  // ---------------------------------------------------------------- secret

  function askSecret() {
    const refused = !!S.secret;
    if (refused) {
      S.secret = null;
      session("remove");
    }
    setState("auth");
    const dlg = $("auth");
    $("auth-error").textContent = "That secret was refused.";
    $("auth-error").hidden = !refused;
    $("secret").value = "";
    if (!dlg.open) dlg.showModal();
    $("secret").focus();
  }

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

  function setState(state, detail) {
    S.state = state;
    const st = $("status");
    st.dataset.state = state;
    st.className = "status status-" + state;
    const text = {
      connecting: S.attempt ? "reconnecting…" : "connecting…",
      live: "live",
      disconnected: "disconnected, retrying",
      auth: "secret needed",
      error: "error",
    }[state];
    st.textContent = text;
    document.body.classList.toggle("stale", state !== "live");
    $("forget-secret").hidden = !S.secret;
    updateBanner(detail);
  }

  function updateBanner(detail) {
    const banner = $("banner");
    if (S.state === "disconnected") {
      const secs = Math.max(0, Math.ceil((S.retryAt - Date.now()) / 1000));
      $("banner-text").textContent = "Disconnected from the node (" + S.reason + "). Retrying in "
        + secs + " s (attempt " + S.attempt + "); the tree below may be out of date.";
      $("retry-now").hidden = false;
      banner.hidden = false;
      banner.className = "banner banner-warn";
    } else if (S.state === "error") {
      $("banner-text").textContent = detail || S.reason;
      $("retry-now").hidden = !!S.badRoot;
      banner.hidden = false;
      banner.className = "banner banner-error";
    } else if (S.state === "connecting" && S.attempt) {
      $("banner-text").textContent = "Reconnecting (attempt " + (S.attempt + 1) + ")…";
      $("retry-now").hidden = true;
      banner.hidden = false;
      banner.className = "banner banner-warn";
    } else {
      banner.hidden = true;
    }
  }
  setInterval(() => { if (S.state === "disconnected") updateBanner(); }, 500);

  $("retry-now").addEventListener("click", () => {
    if (S.wake) S.wake();
    else if (S.state === "error") run();
  });

  let messageTimer = null;
  function message(text) {
    $("message").textContent = text;
    clearTimeout(messageTimer);
    messageTimer = setTimeout(() => { $("message").textContent = ""; }, 8000);
  }

  function noteNodeRev(rev) {
    if (S.nodeRev === null || rev > S.nodeRev || S.state !== "live") {
      S.nodeRev = rev;
      $("store-rev").textContent = String(rev);
    }
  }

  function renderCluster(c) {
    const name = c.cluster || "";
    $("cluster-name").textContent = name;
    document.title = (name ? name + " – " : "") + "doozer" + (S.root !== "/" ? " " + S.root : "");
    const tbody = $("members").querySelector("tbody");
    const rows = [];
    const seen = new Set();
    for (const m of c.members || []) {
      seen.add(m.id);
      rows.push(memberRow(m.id, m.addr, m.slot, m.applied, true));
    }
    for (const n of c.nodes || []) {
      const id = typeof n === "string" ? n : n && n.id;
      if (!id || seen.has(id)) continue;
      rows.push(memberRow(id, n.addr, null, n.applied, false));
    }
    tbody.replaceChildren(...rows);
    $("members-box").hidden = rows.length === 0;
  }

  function memberRow(id, addr, slot, applied, member) {
    const tr = el("tr", member ? "member" : "nonmember");
    tr.dataset.id = id;
    tr.append(el("td", "m-id", id), el("td", "m-addr", addr ?? ""),
              el("td", "m-slot", slot === null || slot === undefined ? "–" : String(slot)),
              el("td", "m-applied", applied === null || applied === undefined ? "" : String(applied)));
    const note = [];
    if (!member) note.push("not a member");
    if (id === S.nodeId) note.push("serving this page");
    tr.append(el("td", "m-note", note.join(", ")));
    return tr;
  }

  function renderCrumbs() {
    const nav = $("crumbs");
    const parts = S.root === "/" ? [] : S.root.slice(1).split("/");
    const items = [];
    const rootLink = el("a", "crumb", "/");
    rootLink.href = "/";
    items.push(rootLink);
    let acc = "";
    parts.forEach((p, i) => {
      acc += "/" + p;
      const last = i === parts.length - 1;
      const a = el("a", "crumb", p + (last && S.mode === "file" ? "" : "/"));
      a.href = last && S.mode === "file" ? acc : acc + "/";
      items.push(a);
    });
    items[items.length - 1].setAttribute("aria-current", "page");
    nav.replaceChildren(...items);
  }

  // --------------------------------------------------------------- values

  function byteLength(f) {
    if (f.base64) {
      const pad = f.value.endsWith("==") ? 2 : f.value.endsWith("=") ? 1 : 0;
      return Math.floor(f.value.length * 3 / 4) - pad;
    }
    return new TextEncoder().encode(f.value).length;
  }

  function shortValue(f) {
    const oneLine = f.value.replace(/\r?\n/g, "↵");
    const long = oneLine.length > SHORT || oneLine !== f.value;
    return { text: oneLine.length > SHORT ? oneLine.slice(0, SHORT) + "…" : oneLine, long };
  }

  // "00000000  ff fe 00 01 ...  |....|" lines of a base64 value's bytes.
  function hexDump(b64) {
    let bin;
    try { bin = atob(b64); } catch (e) { return "(not valid base64)"; }
    const lines = [];
    for (let off = 0; off < bin.length; off += 16) {
      const chunk = bin.slice(off, off + 16);
      let hex = "", text = "";
      for (let i = 0; i < 16; i++) {
        if (i < chunk.length) {
          const c = chunk.charCodeAt(i);
          hex += c.toString(16).padStart(2, "0") + " ";
          text += c >= 0x20 && c < 0x7f ? chunk[i] : ".";
        } else hex += "   ";
        if (i === 7) hex += " ";
      }
      lines.push(off.toString(16).padStart(8, "0") + "  " + hex + " |" + text + "|");
    }
    return lines.join("\n");
  }

  function showDetail(path, open) {
    const f = files.get(path);
    const dlg = $("detail");
    if (!f) { if (dlg.open) dlg.close(); return; }
    S.detailPath = path;
    $("detail-path").textContent = path;
    const meta = ["rev " + f.rev, byteLength(f) + " bytes"];
    if (f.base64) meta.push("not UTF-8: shown as base64");
    if (f.deleted) meta.push("deleted");
    $("detail-meta").textContent = meta.join(" · ");
    $("detail-value").textContent = f.value;
    $("detail-value").classList.toggle("b64", f.base64);
    $("detail-hex").textContent = f.base64 ? hexDump(f.value) : "";
    $("detail-hex").hidden = $("detail-hex-title").hidden = !f.base64;
    if (open && !dlg.open) dlg.showModal();
  }
  $("detail-close").addEventListener("click", () => $("detail").close());
  $("detail").addEventListener("close", () => { S.detailPath = null; });
  $("detail").addEventListener("click", (ev) => { if (ev.target === $("detail")) $("detail").close(); });

  // ------------------------------------------------------------ rendering

  let rows = [];                 // flattened visible rows: {node, depth, label}
  const shown = new Map();       // key -> element currently in the DOM
  let renderQueued = false;

  function scheduleRender() {
    if (renderQueued) return;
    renderQueued = true;
    requestAnimationFrame(() => { renderQueued = false; render(); });
  }

  function buildRows() {
    rows = [];
    const needle = S.filter.toLowerCase();
    if (needle) {
      const all = Array.from(files.values()).filter((f) => f.path.toLowerCase().includes(needle));
      all.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
      for (const f of all) rows.push({ node: f, depth: 0, label: f.path });
      message(all.length + " matching files");
    } else {
      const walk = (dir, depth) => {
        for (const c of dir.sortedChildren()) {
          rows.push({ node: c, depth, label: c instanceof Dir ? c.name + "/" : c.name });
          if (c instanceof Dir && c.open) walk(c, depth + 1);
        }
      };
      walk(tree, 0);
    }
    rowsDirty = false;
  }

  function render() {
    if (rowsDirty) buildRows();
    const box = $("rows");
    box.style.height = rows.length * ROW_H + "px";
    $("empty").hidden = rows.length > 0 || S.state === "connecting" || S.state === "auth";
    $("file-count").textContent = String(tree.count);
    const top = box.getBoundingClientRect().top;
    const first = Math.max(0, Math.floor(-top / ROW_H) - OVERSCAN);
    const last = Math.min(rows.length, Math.ceil((window.innerHeight - top) / ROW_H) + OVERSCAN);
    const now = performance.now();
    const keep = new Set();
    let flashing = false;
    for (let i = first; i < last; i++) {
      const row = rows[i];
      const key = (S.filter ? "f:" : "t:") + row.node.path;
      keep.add(key);
      let e = shown.get(key);
      if (!e) {
        e = el("div");
        e.dataset.path = row.node.path;
        shown.set(key, e);
        box.append(e);
      }
      if (fillRow(e, row, now)) flashing = true;
      e.style.top = i * ROW_H + "px";
    }
    for (const [key, e] of shown) {
      if (!keep.has(key)) { e.remove(); shown.delete(key); }
    }
    if (flashing) setTimeout(scheduleRender, FLASH_MS);
  }

  // Bring one row element up to date; rebuilt only when what it shows changed.
  function fillRow(e, row, now) {
    const n = row.node;
    const isDir = n instanceof Dir;
    const flash = n.flash && now - n.flash < FLASH_MS ? n.flash : 0;
    const sig = [row.depth, row.label, isDir ? n.open + "/" + n.count : n.rev + "/" + n.base64 + "/" + n.deleted,
                 isDir ? "" : n.value, flash].join("|");
    if (e._sig === sig) return !!flash;
    e._sig = sig;
    e.className = "row " + (isDir ? "dir" : "file") + (flash ? (isDir ? " flash-dir" : " flash") : "")
      + (!isDir && n.deleted ? " deleted" : "");
    e.style.animationDelay = flash ? -(now - flash) + "ms" : "";
    e.setAttribute("role", "treeitem");
    if (isDir) e.setAttribute("aria-expanded", String(n.open));
    else e.removeAttribute("aria-expanded");
    e.dataset.rev = isDir ? "" : String(n.rev);

    const cp = el("span", "c-path");
    cp.style.paddingLeft = 8 + row.depth * 18 + "px";
    if (isDir) {
      const tw = el("button", "tw", n.open ? "▾" : "▸");
      tw.type = "button";
      tw.title = n.open ? "collapse" : "expand";
      tw.setAttribute("aria-label", (n.open ? "collapse " : "expand ") + n.path);
      cp.append(tw);
    } else {
      cp.append(el("span", "tw-space"));
    }
    const name = el("span", "name", row.label);
    name.title = n.path;
    if (!isDir) name.tabIndex = 0;  // Enter opens the detail view
    cp.append(name);
    if (isDir) {
      const a = el("a", "open-sub", "open");
      a.href = n.path + "/";
      a.title = "show only " + n.path + "/";
      cp.append(a);
    }
    const cr = el("span", "c-rev", isDir ? "" : String(n.rev));
    const cv = el("span", "c-value");
    if (isDir) {
      cv.append(el("span", "count", n.count + (n.count === 1 ? " file" : " files")));
    } else if (n.deleted) {
      cv.append(el("span", "gone", "deleted"));
    } else {
      if (n.base64) {
        const b = el("span", "badge", "base64");
        b.title = "not valid UTF-8: the value is shown as base64";
        cv.append(b);
      }
      if (n.value === "") {
        cv.append(el("span", "v empty-value", "(empty)"));
      } else {
        const sv = shortValue(n);
        cv.append(el("span", "v", sv.text));
        if (sv.long) {
          const more = el("button", "more", "show all");
          more.type = "button";
          more.title = "show the whole value (" + byteLength(n) + " bytes)";
          cv.append(more);
        }
      }
    }
    e.replaceChildren(cp, cr, cv);
    return !!flash;
  }

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
      rowsDirty = true;
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

  function findDir(path) {
    if (path === tree.path) return tree;
    const parts = relParts(path);
    let d = tree;
    for (const p of parts) {
      d = d.children.get(p);
      if (!(d instanceof Dir)) return null;
    }
    return d;
  }

  function setAllOpen(open) {
    (function walk(d) {
      for (const c of d.children.values()) if (c instanceof Dir) { c.open = open; walk(c); }
    })(tree);
    rowsDirty = true;
    scheduleRender();
  }
  $("expand-all").addEventListener("click", () => setAllOpen(true));
  $("collapse-all").addEventListener("click", () => setAllOpen(false));

  let filterTimer = null;
  $("filter").addEventListener("input", () => {
    clearTimeout(filterTimer);
    filterTimer = setTimeout(() => {
      S.filter = $("filter").value.trim();
      if (!S.filter) message("");
      rowsDirty = true;
      scheduleRender();
    }, 120);
  });

  window.addEventListener("scroll", scheduleRender, { passive: true });
  window.addEventListener("resize", scheduleRender);
  setInterval(refreshCluster, CLUSTER_EVERY);

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
  tree = new Dir("", S.root, null);
  S.glob = S.root === "/" ? "/**" : S.root + "/**";
  renderCrumbs();
  run();
})();
