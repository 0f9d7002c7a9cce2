// doozer WebView: what is around the tree. The status pill and the banner,
// passing messages, the store's rev, the breadcrumbs, and the dialog that
// asks for the secret. (The cluster's health and leases: health.js.)

import { $, el, S, session } from "./common.js";
import { notedLiveRev } from "./history.js";

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
    history: "history",
  }[state];
  st.textContent = text;
  document.body.classList.toggle("stale", state !== "live" && state !== "history");
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
    notedLiveRev();
  }
}

// ------------------------------------------------------------------ path

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
