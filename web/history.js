// doozer WebView: history. The tree as of any rev still in the node's history
// window (GET /v1/walk?rev=R, paged like the live load), and optionally what
// changed between two revs: the tree at the later one with the files added,
// changed or deleted since the earlier one marked (model.js showTrees: a
// comparison of the two walks, so it is exact and costs two walks whatever
// happened in between).
//
// Showing history abandons the live loop (S.gen) so live changes leave the
// view alone; the cluster and leases polls go on, and the live rev stays in
// the top bar. "live" runs the loop again (a fresh load). The oldest rev the
// node answers at comes from the SPEC's own TOO_LATE answer: a read at rev 1
// either works (nothing was pruned yet) or says "oldest".

import { $, S } from "./common.js";
import { showTrees } from "./model.js";
import { AuthNeeded, HttpError, api, run, walkAll } from "./network.js";
import { setState } from "./status.js";

class Superseded extends Error {}

let sliding = false;       // the user is dragging the slider: leave its value alone
let slideTimer = null;
let probing = false;
let probedAt = 0;          // when the oldest rev was last asked for (ms)
const PROBE_EVERY = 2000;  // ms, at most

// A rev typed in a box: null when empty, undefined when not a rev.
function parseRev(text) {
  const t = text.trim();
  if (t === "") return null;
  if (!/^[0-9]{1,15}$/.test(t) || Number(t) < 1) return undefined;
  return Number(t);
}

function note(text, error) {
  const n = $("hist-note");
  n.textContent = text;
  n.classList.toggle("error", !!error);
}

const plural = (n, one, many) => n + " " + (n === 1 ? one : many);

function viewNote() {
  const v = S.view;
  if (!v) return "";
  let text = "Showing rev " + v.rev;
  if (v.since !== null) {
    const c = v.counts;
    text += ", changes since rev " + v.since + ": " + c.added + " added, " + c.changed + " changed, "
      + c.deleted + " deleted";
  }
  return text + ". Live rev " + (S.nodeRev ?? "?") + ".";
}

// Bring the slider, the range and the labels up to date (the live rev or
// the oldest rev moved, or the view changed).
function updateControls() {
  const live = S.nodeRev ?? 1;
  const oldest = Math.min(S.oldest ?? 1, live);
  const slider = $("at-slider");
  slider.min = String(oldest);
  slider.max = String(live);
  if (!sliding) slider.value = String(S.view ? S.view.rev : live);
  $("hist-range").textContent = "history: revs " + (S.oldest === null ? "?" : oldest) + "–" + live;
  $("viewing").hidden = !S.view;
  $("view-rev").textContent = S.view ? String(S.view.rev) : "";
  $("rev-label").textContent = S.view ? "live rev" : "rev";
  $("go-live").disabled = !S.view;
  document.body.classList.toggle("history", !!S.view);
}

// Called by status.js whenever the node's rev (X-Doozer-Rev) moves.
export function notedLiveRev() {
  probeOldest();
  updateControls();
  if (S.view && !$("hist-note").classList.contains("error")) note(viewNote());
}

async function probeOldest(now) {
  if (probing || (!now && Date.now() - probedAt < PROBE_EVERY)) return;
  probing = true;
  probedAt = Date.now();
  try {
    await api("/v1/stat/", { rev: 1 });
    S.oldest = 1;
  } catch (e) {
    if (e instanceof HttpError && e.code === "TOO_LATE" && Number.isInteger(e.body.oldest)) {
      S.oldest = e.body.oldest;
    }
  } finally {
    probing = false;
  }
  updateControls();
}

export async function showHistory() {
  if (S.state !== "live" && S.state !== "history") {
    note("history needs the node: not connected", true);
    return;
  }
  let at = parseRev($("at-rev").value);
  let since = parseRev($("since-rev").value);
  if (at === undefined || since === undefined) {
    note("a rev is a whole number, 1 or more", true);
    return;
  }
  if (at === null && since === null) { goLive(); return; }
  const live = S.nodeRev;
  if (at === null) at = live;
  if (since !== null && since > at) {
    [at, since] = [since, at];
    $("at-rev").value = String(at);
    $("since-rev").value = String(since);
  }
  if (at > live) {
    note("rev " + at + " is not there yet: the live rev is " + live, true);
    return;
  }
  const gen = ++S.histGen;
  const check = () => { if (gen !== S.histGen) throw new Superseded(); };
  let reading = at;
  note("reading rev " + at + "…");
  try {
    const { list } = await walkAll(at, check);
    let base = null;
    if (since !== null) {
      reading = since;
      base = since === at ? list : (await walkAll(since, check)).list;
    }
    S.gen += 1;            // the live loop stops here; "live" starts it again
    S.view = { rev: at, since, counts: null };
    S.view.counts = showTrees(list, base);
    setState("history");
    note(viewNote());
  } catch (e) {
    if (e instanceof Superseded) return;
    if (e instanceof HttpError && e.code === "TOO_LATE") {
      if (Number.isInteger(e.body.oldest)) S.oldest = e.body.oldest;
      note("rev " + reading + " is no longer in this node's history: the oldest rev still available is "
           + (S.oldest ?? "unknown") + ".", true);
    } else if (e instanceof AuthNeeded) {
      note("the node wants a secret again: reload the page", true);
    } else {
      note("could not read rev " + reading + ": " + e.message, true);
    }
  }
  updateControls();
}

export function goLive() {
  S.histGen += 1;
  $("at-rev").value = "";
  $("since-rev").value = "";
  note("");
  if (S.view) {
    S.view = null;
    run();               // a fresh load; what differs from the history shown flashes
  }
  updateControls();
}

export function initHistory() {
  const slider = $("at-slider");
  slider.addEventListener("input", () => {
    sliding = true;
    $("at-rev").value = slider.value;
    clearTimeout(slideTimer);
    slideTimer = setTimeout(() => { sliding = false; showHistory(); }, 300);
  });
  for (const id of ["at-rev", "since-rev"]) {
    $(id).addEventListener("keydown", (ev) => {
      if (ev.key === "Enter") { ev.preventDefault(); showHistory(); }
    });
  }
  $("show-rev").addEventListener("click", showHistory);
  $("go-live").addEventListener("click", goLive);
  updateControls();
}
