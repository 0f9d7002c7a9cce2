// doozer WebView: the cluster's health, from GET /v1/cluster and GET
// /v1/leases (network.js polls them). The members with whether they vote and
// the rev each has applied; a banner from fault_tolerance (SPEC §3: how many
// more voting members may fail with writes still committing, negative
// without a quorum); the leases with their ttl and files (SPEC §9).

import { $, el, LEASE_FILES_SHOWN, LEASES_SHOWN, S } from "./common.js";

const plural = (n, one, many) => n + " " + (n === 1 ? one : many);

export function renderCluster(c) {
  const name = typeof c.cluster === "string" ? c.cluster : "";
  $("cluster-name").textContent = name;
  document.title = (name ? name + " – " : "") + "doozer" + (S.root !== "/" ? " " + S.root : "");
  const tbody = $("members").querySelector("tbody");
  const rows = [];
  const seen = new Set();
  let voting = 0;
  for (const m of Array.isArray(c.members) ? c.members : []) {
    if (!m || typeof m.id !== "string") continue;
    seen.add(m.id);
    if (m.voting === true) voting += 1;
    rows.push(memberRow(m.id, m.addr, m.slot, m.voting, m.applied, true));
  }
  for (const n of Array.isArray(c.nodes) ? c.nodes : []) {
    const id = typeof n === "string" ? n : n && n.id;
    if (typeof id !== "string" || seen.has(id)) continue;
    rows.push(memberRow(id, n.addr, null, false, n.applied, false));
  }
  tbody.replaceChildren(...rows);
  $("members-box").hidden = rows.length === 0;
  renderFaultTolerance(c.fault_tolerance, voting);
  $("health").hidden = false;
}

function memberRow(id, addr, slot, voting, applied, member) {
  const tr = el("tr", member ? "member" : "nonmember");
  tr.dataset.id = id;
  const vote = el("td", "m-voting " + (voting === true ? "yes" : "no"), voting === true ? "yes" : "no");
  if (member && voting !== true) {
    vote.title = "in the CAL, not voting yet: a new member votes from a few instances after it joins";
  }
  tr.append(el("td", "m-id", id), el("td", "m-addr", typeof addr === "string" ? addr : ""),
            el("td", "m-slot", Number.isInteger(slot) ? String(slot) : "–"),
            vote,
            el("td", "m-applied", Number.isInteger(applied) ? String(applied) : ""));
  const note = [];
  if (!member) note.push("not a member");
  if (id === S.nodeId) note.push("serving this page");
  tr.append(el("td", "m-note", note.join(", ")));
  return tr;
}

// Green: can lose N ≥ 1 members; amber: can lose none (one more failure
// stops writes); red: no quorum (writes cannot commit now).
function renderFaultTolerance(ft, voting) {
  const box = $("ft");
  if (!Number.isInteger(ft)) { box.hidden = true; return; }
  let level, text, detail;
  if (ft >= 1) {
    level = "ok";
    text = "can lose " + plural(ft, "member", "members");
    detail = "and still commit writes";
  } else if (ft === 0) {
    level = "warn";
    text = "can lose 0 members";
    detail = "writes commit, but one more failure stops them";
  } else {
    level = "bad";
    text = "no quorum";
    detail = "writes cannot commit: too few voting members are heard from";
  }
  if (voting) detail += " (" + plural(voting, "voting member", "voting members") + ", as this node sees it)";
  box.className = "ft ft-" + level;
  box.dataset.level = level;
  box.dataset.ft = String(ft);
  $("ft-text").textContent = text;
  $("ft-detail").textContent = detail;
  box.hidden = false;
}

export function renderLeases(r) {
  const leases = Array.isArray(r && r.leases) ? r.leases : [];
  const rows = [];
  for (const lease of leases.slice(0, LEASES_SHOWN)) {
    if (!lease || typeof lease.id !== "string") continue;
    const tr = el("tr", "lease");
    tr.dataset.id = lease.id;
    const files = Array.isArray(lease.files) ? lease.files.filter((f) => typeof f === "string") : [];
    const td = el("td", "l-files");
    files.slice(0, LEASE_FILES_SHOWN).forEach((path, i) => {
      if (i) td.append(", ");
      td.append(el("span", "l-file", path));
    });
    if (files.length > LEASE_FILES_SHOWN) td.append(el("span", "more-files", " and " + (files.length - LEASE_FILES_SHOWN) + " more"));
    if (!files.length) td.append(el("span", "none", "no files"));
    tr.append(el("td", "l-id", lease.id),
              el("td", "l-ttl", Number.isFinite(lease.ttl) ? lease.ttl + " s" : ""), td);
    rows.push(tr);
  }
  if (leases.length > LEASES_SHOWN) {
    const tr = el("tr", "lease-more");
    const td = el("td", "none", "and " + (leases.length - LEASES_SHOWN) + " more leases");
    td.colSpan = 3;
    tr.append(td);
    rows.push(tr);
  }
  $("leases").querySelector("tbody").replaceChildren(...rows);
  $("leases").hidden = rows.length === 0;
  $("no-leases").hidden = rows.length > 0;
}
