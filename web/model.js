// doozer WebView: the tree model. The files of the subtree shown (S.root),
// as directories of their children with live file counts; a walk's result
// replaces it, watch events update it. A history view is a tree as of an old
// rev, its files marked with how they differ from another rev (diff). No DOM
// here: what changed is drawn by view.js, asked through hooks.

import { FLASH_MS, S } from "./common.js";

export class Dir {
  constructor(name, path, parent) {
    this.name = name;
    this.path = path;
    this.parent = parent;
    this.children = new Map();
    this.sorted = null;     // cached sorted children
    this.count = 0;         // live files below
    this.open = !(path === "/ctl" && S.root === "/");
    this.flash = 0;
    this.diffs = 0;         // files below that differ from the compared rev
  }
  sortedChildren() {
    if (this.sorted === null) {
      this.sorted = Array.from(this.children.values());
      this.sorted.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    }
    return this.sorted;
  }
}

export class File {
  constructor(name, path, parent) {
    this.name = name;
    this.path = path;
    this.parent = parent;
    this.rev = 0;
    this.value = "";
    this.base64 = false;
    this.flash = 0;
    this.deleted = 0;       // when it was deleted (shown struck out, then removed)
    this.diff = "";         // history view: "added" | "changed" | "deleted" | ""
    this.was = null;        // history view: {rev, value, base64} at the compared rev
  }
}

export let tree = new Dir("", S.root, null);
export const files = new Map();   // path -> File (deleted ones too, until purged)

// Set by app.js: redraw (soon), and show a changed file in the detail dialog.
export const hooks = { scheduleRender: () => {}, detailChanged: (path) => {} };

// A new, empty tree for S.root (which the start sets).
export function resetTree() {
  tree = new Dir("", S.root, null);
}

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
  S.rowsDirty = true;
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
      S.rowsDirty = true;
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
    S.rowsDirty = true;
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
    if (!f.deleted || f.diff === "deleted") continue;
    if (now - f.deleted >= FLASH_MS) {
      const dir = f.parent;
      removeNode(f);
      pruneDirs(dir);
    } else later = true;
  }
  if (later) setTimeout(purge, FLASH_MS);
  hooks.scheduleRender();
}

// Which directories are open and which collapsed, to keep across a new tree.
function openness() {
  const closed = new Set();
  const open = new Set();
  (function collect(d) {
    for (const c of d.children.values()) {
      if (c instanceof Dir) { (c.open ? open : closed).add(c.path); collect(c); }
    }
  })(tree);
  return { closed, open };
}

function restoreOpenness({ closed, open }) {
  (function restore(d) {
    for (const c of d.children.values()) {
      if (c instanceof Dir) {
        if (closed.has(c.path)) c.open = false;
        else if (open.has(c.path)) c.open = true;
        restore(c);
      }
    }
  })(tree);
}

// Replace the whole tree with a walk's result, keeping which directories
// are collapsed; after the first load, differences are highlighted.
export function replaceTree(list) {
  const first = files.size === 0;
  const kept = openness();
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
  restoreOpenness(kept);
  S.rowsDirty = true;
  hooks.scheduleRender();
}

// Whether a file at path would displace something in the tree: a file on
// the way to it, or a directory where it is (a path that was a file at one
// rev and a directory at the other).
function displaces(path) {
  const parts = relParts(path);
  let d = tree;
  for (let i = 0; i < parts.length; i++) {
    const c = d.children.get(parts[i]);
    if (!c) return false;
    if (c instanceof File) return i < parts.length - 1;
    if (i === parts.length - 1) return true;
    d = c;
  }
  return false;
}

function markDiff(f, kind, before) {
  f.diff = kind;
  if (before) f.was = { rev: before.rev, value: before.value ?? "", base64: before.encoding === "base64" };
  for (let d = f.parent; d; d = d.parent) d.diffs += 1;
}

// A history view: the tree as of a rev (list: a walk at that rev) and, with
// base (a walk at an older rev), every difference marked: files added,
// changed (another rev) and deleted (shown struck out, with their old
// value). Returns the counts of each.
export function showTrees(list, base) {
  const kept = openness();
  tree = new Dir("", S.root, null);
  files.clear();
  const counts = { added: 0, changed: 0, deleted: 0 };
  const before = base ? new Map(base.map((b) => [b.path, b])) : null;
  for (const item of list) {
    setFile(item.path, item.rev, item.value ?? "", item.encoding === "base64", false, 0);
    if (!before) continue;
    const b = before.get(item.path);
    const kind = !b ? "added" : b.rev !== item.rev ? "changed" : "";
    if (kind) {
      markDiff(files.get(item.path), kind, b);
      counts[kind] += 1;
    }
  }
  if (before) {
    const now = new Set(list.map((item) => item.path));
    for (const b of base) {
      if (now.has(b.path)) continue;
      counts.deleted += 1;
      if (displaces(b.path)) continue;
      setFile(b.path, b.rev, b.value ?? "", b.encoding === "base64", false, 0);
      const f = files.get(b.path);
      f.deleted = 1;
      addCount(f, -1);
      markDiff(f, "deleted", b);
    }
  }
  restoreOpenness(kept);
  S.rowsDirty = true;
  hooks.scheduleRender();
  return counts;
}

export function applyEvents(events) {
  const now = performance.now();
  for (const ev of events) {
    if (ev.op === "del") delFile(ev.path, true, now);
    else setFile(ev.path, ev.rev, ev.value ?? "", ev.encoding === "base64", true, now);
    if (ev.path === S.detailPath) hooks.detailChanged(ev.path);
  }
  if (events.length) hooks.scheduleRender();
}

export function findDir(path) {
  if (path === tree.path) return tree;
  const parts = relParts(path);
  let d = tree;
  for (const p of parts) {
    d = d.children.get(p);
    if (!(d instanceof Dir)) return null;
  }
  return d;
}

export function setAllOpen(open) {
  (function walk(d) {
    for (const c of d.children.values()) if (c instanceof Dir) { c.open = open; walk(c); }
  })(tree);
  S.rowsDirty = true;
  hooks.scheduleRender();
}
