// doozer WebView: drawing the tree. The model's directories (collapsible) are
// flattened into rows, of which only those in (or near) the viewport are in
// the DOM (virtual scrolling); a row is rebuilt only when what it shows
// changed. Also the values as shown in a row and in the detail dialog.

import { $, el, FLASH_MS, OVERSCAN, ROW_H, S, SHORT } from "./common.js";
import { Dir, files, tree } from "./model.js";
import { message } from "./status.js";

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

export function showDetail(path, open) {
  const f = files.get(path);
  const dlg = $("detail");
  if (!f) { if (dlg.open) dlg.close(); return; }
  S.detailPath = path;
  $("detail-path").textContent = path;
  const meta = ["rev " + f.rev, byteLength(f) + " bytes"];
  if (f.base64) meta.push("not UTF-8: shown as base64");
  if (f.diff && S.view) meta.push(f.diff + " since rev " + S.view.since);
  else if (f.deleted) meta.push("deleted");
  $("detail-meta").textContent = meta.join(" · ");
  $("detail-value").textContent = f.value;
  $("detail-value").classList.toggle("b64", f.base64);
  $("detail-hex").textContent = f.base64 ? hexDump(f.value) : "";
  $("detail-hex").hidden = $("detail-hex-title").hidden = !f.base64;
  // A changed file in a history view: what it was at the compared rev.
  const was = S.view && f.diff === "changed" && f.was;
  $("detail-was-title").textContent = was ? "at rev " + S.view.since + " (its rev " + f.was.rev + ")" : "";
  $("detail-was").textContent = was ? f.was.value : "";
  $("detail-was").classList.toggle("b64", !!(was && f.was.base64));
  $("detail-was").hidden = $("detail-was-title").hidden = !was;
  if (open && !dlg.open) dlg.showModal();
}

// ------------------------------------------------------------ rendering

let rows = [];                 // flattened visible rows: {node, depth, label}
const shown = new Map();       // key -> element currently in the DOM
let renderQueued = false;

export function scheduleRender() {
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
  S.rowsDirty = false;
}

function render() {
  if (S.rowsDirty) buildRows();
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
  const sig = [row.depth, row.label, isDir ? n.open + "/" + n.count + "/" + n.diffs
                 : n.rev + "/" + n.base64 + "/" + n.deleted + "/" + n.diff,
               isDir ? "" : n.value, flash].join("|");
  if (e._sig === sig) return !!flash;
  e._sig = sig;
  e.className = "row " + (isDir ? "dir" : "file") + (flash ? (isDir ? " flash-dir" : " flash") : "")
    + (!isDir && n.deleted ? " deleted" : "") + (!isDir && n.diff ? " diff-" + n.diff : "")
    + (isDir && n.diffs ? " has-diffs" : "");
  if (!isDir && n.diff && S.view) {
    e.dataset.diff = n.diff;
    e.title = n.diff + " since rev " + S.view.since
      + (n.was && n.diff === "changed" ? " (was rev " + n.was.rev + ": " + shortValue(n.was).text + ")" : "");
  } else {
    delete e.dataset.diff;
    e.removeAttribute("title");
  }
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
    cv.append(el("span", "count", n.count + (n.count === 1 ? " file" : " files")
      + (n.diffs ? " · " + n.diffs + (n.diffs === 1 ? " change" : " changes") : "")));
  } else if (n.diff === "deleted") {
    cv.append(el("span", "gone", "deleted"), el("span", "v was", shortValue(n).text));
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
    if (n.diff === "changed" && n.was && (n.was.value !== n.value || n.was.base64 !== n.base64)) {
      cv.append(el("span", "was", "was " + (n.was.value === "" ? "(empty)" : shortValue(n.was).text)));
    }
  }
  e.replaceChildren(cp, cr, cv);
  return !!flash;
}

