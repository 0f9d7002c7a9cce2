// doozer WebView: what is around the tree. The status pill and the banner,
// passing messages, the store's rev, the cluster's members, the breadcrumbs,
// and the dialog that asks for the secret.

import { $, el, S, session } from "./common.js";

export function setState(state, detail) {
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

export function updateBanner(detail) {
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

let messageTimer = null;
export function message(text) {
  $("message").textContent = text;
  clearTimeout(messageTimer);
  messageTimer = setTimeout(() => { $("message").textContent = ""; }, 8000);
}

export function noteNodeRev(rev) {
  if (S.nodeRev === null || rev > S.nodeRev || S.state !== "live") {
    S.nodeRev = rev;
    $("store-rev").textContent = String(rev);
  }
}

// ---------------------------------------------------------- cluster, path

export function renderCluster(c) {
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

export function renderCrumbs() {
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


// ---------------------------------------------------------------- secret

export function askSecret() {
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
