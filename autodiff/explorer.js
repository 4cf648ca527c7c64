// The tape explorer's script (embedded by ad::write_explorer into the page it writes).
//
// The page's data is one JSON object in the script element "tape-data", written by the library:
//   entries[k]   entry k+1: i, name, op, line (its listing line), dtype, shape, group, grad
//                (whether it takes a gradient), args, value and adj (its final adjoint, or null)
//   steps[s]     step 0 is the seed; step s > 0 is one backward step of entry e, with c: one record
//                per argument it added to: to, added, after (that adjoint after the step), and for
//                scalar entries the local partial
//   graph        Graphviz's SVG of the tape (node n<e> is entry e), or null; graphNote says why not
// A tensor (value, adjoint, added) is {n, nan, inf, min, max, mean, els | head}: the statistics
// are over the finite elements; els has every element, head only the first few (large tensors).
// Non-finite numbers come as the strings "NaN", "Infinity" and "-Infinity".
//
// The replay has positions 0..S: position k shows the adjoints after steps 0..k, with step k's
// entry and the adjoints it added to highlighted.
"use strict";

(function () {
  const NUMERIC_KEYS = new Set(["min", "max", "mean", "partial"]);
  const data = JSON.parse(document.getElementById("tape-data").textContent, function (key, v) {
    // Turn the spelled-out non-finite numbers back into numbers.  Strings inside arrays are only
    // ever numbers (names and ops are never in arrays).
    if (typeof v === "string" && (Array.isArray(this) || NUMERIC_KEYS.has(key))) return Number(v);
    return v;
  });

  const $ = (id) => document.getElementById(id);
  const entryOf = new Map(data.entries.map((en) => [en.i, en]));
  const steps = data.steps;
  const last = steps.length - 1;

  // For each entry, the steps that added to its adjoint, in sweep order: [[step, record], ...].
  const contributions = new Map();
  steps.forEach((st, s) => {
    for (const c of st.c) {
      if (!contributions.has(c.to)) contributions.set(c.to, []);
      contributions.get(c.to).push([s, c]);
    }
  });

  let position = last;  // the replay position
  let selected = null;  // the entry shown in the panel

  // ---- numbers --------------------------------------------------------------------------------------

  /** A number in full: the shortest text that reads back to the same value. */
  const full = (x) => String(x);
  /** A number to six significant digits. */
  const short = (x) => (Number.isFinite(x) ? String(Number(x.toPrecision(6))) : String(x));
  const finite = (t) => t.nan === 0 && t.inf === 0;

  /** "[0.25, -1, 3.5, ...]" or "0.25": a tensor in a few characters. */
  function brief(t, count = 3) {
    const els = t.els || t.head;
    if (t.n === 1) return short(els[0]);
    const shown = els.slice(0, count).map(short).join(", ");
    return "[" + shown + (t.n > count ? ", ..." : "") + "]";
  }

  /** "min -1 max 3.5 mean 0.8" (for more than one element), with NaN and infinity counts. */
  function stats(t) {
    const parts = [];
    if (t.min !== undefined && t.n > 1) parts.push(`min ${short(t.min)} max ${short(t.max)} mean ${short(t.mean)}`);
    if (t.nan) parts.push(`NaN ×${t.nan}`);
    if (t.inf) parts.push(`inf ×${t.inf}`);
    return parts.join("  ");
  }

  // ---- the replay ----------------------------------------------------------------------------------

  /** The adjoint of entry e after steps 0..k, or null if nothing has flowed into it yet. */
  function adjointAt(e, k) {
    const list = contributions.get(e);
    if (!list) return null;
    let lo = 0, hi = list.length;  // the number of contributions made at steps <= k
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (list[mid][0] <= k) lo = mid + 1;
      else hi = mid;
    }
    return lo === 0 ? null : list[lo - 1][1].after;
  }

  const label = (e) => {
    const en = entryOf.get(e);
    return en && en.name ? `#${e} ${en.name}` : `#${e}`;
  };

  // ---- elements from the DOM, built with textContent only (names are never parsed as markup) ----

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") node.className = v;
      else node.setAttribute(k, v);
    }
    for (const c of children) node.append(c);
    return node;
  }

  /** The elements of a tensor: a table for a matrix, a wrapping row of cells for a vector (or a
   *  matrix of one row), or a note when there were too many to write into the page. */
  function elementTable(t, shape, cls) {
    if (!t.els) {
      return el("p", { class: "hint" }, `${t.n} elements, too many to list (first: ${t.head.map(short).join(", ")})`);
    }
    const cell = (k) => el("td", { class: Number.isFinite(t.els[k]) ? "el" : "el bad", "data-k": k }, full(t.els[k]));
    const dims = shape.filter((d) => d !== 1);
    if (dims.length <= 1) {  // a vector: cells that wrap
      const row = el("tr", { class: "wrap" });
      for (let k = 0; k < t.n; ++k) row.append(cell(k));
      return el("table", { class: "elements " + cls }, row);
    }
    const cols = shape[shape.length - 1];
    const table = el("table", { class: "elements " + cls });
    for (let r = 0; r * cols < t.n; ++r) {
      const tr = el("tr");
      for (let k = r * cols; k < (r + 1) * cols; ++k) tr.append(cell(k));
      table.append(tr);
    }
    return el("div", { class: "scroll" }, table);
  }

  function tensorBlock(title, t, shape, cls) {
    const box = el("div", { class: cls });
    box.append(el("h3", {}, title));
    if (!t) {
      box.append(el("p", { class: "hint" }, "nothing has flowed into it yet"));
      return box;
    }
    box.append(el("div", { class: "stats" + (finite(t) ? "" : " bad") }, stats(t)));
    box.append(elementTable(t, shape, cls));
    return box;
  }

  // ---- the panel of the selected entry -----------------------------------------------------------

  /** A button that selects entry e. */
  function link(e) {
    const b = el("button", { class: "link" }, label(e));
    b.addEventListener("click", () => select(e, "panel"));
    return b;
  }

  function showDetail() {
    const box = $("detail");
    box.replaceChildren();
    if (selected === null) return;
    const en = entryOf.get(selected);
    box.append(el("h2", {}, label(selected) + "  " + en.op));
    box.append(el("div", { class: "line" }, en.line));
    if (en.args.length) box.append(el("div", { class: "line" }, "arguments: ", ...en.args.map(link)));
    const type = `${en.dtype}[${en.shape.join(",")}]`;
    box.append(el("div", { class: "stats" }, type + (en.group ? `  in ${en.group}` : "")));
    box.append(tensorBlock("value", en.value, en.shape, "value"));
    if (!en.grad) {
      box.append(el("p", { class: "hint" }, "takes no gradient (data or a constant)"));
      return;
    }
    const heading = position === last ? "adjoint" : `adjoint after step ${position} of ${last}`;
    box.append(tensorBlock(heading, adjointAt(selected, position), en.shape, "adjoint"));

    // The contributions whose sum is the adjoint, in sweep order; those after the replay position
    // are greyed out.
    const list = contributions.get(selected) || [];
    box.append(el("h3", {}, `contributions (${list.length}), in sweep order`));
    if (list.length === 0) {
      box.append(el("p", { class: "hint" }, "nothing flowed into this entry"));
      return;
    }
    const table = el("table", { class: "contributions" });
    for (const [s, c] of list) {
      const from = s === 0 ? ["seed"] : [`step ${s}: `, link(steps[s].e), ` ${entryOf.get(steps[s].e).op}`];
      let how = "+ " + brief(c.added, 4);
      if (c.partial !== undefined) how += `  (partial ${short(c.partial)} × its adjoint)`;
      const cls = s > position ? "later" : s === position ? "now" : "";
      const cells = [el("div", {}, ...from, "  ", el("span", { class: finite(c.added) ? "" : "bad" }, how))];
      if (c.added.els && c.added.n > 1) cells.push(elementTable(c.added, en.shape, "added"));
      table.append(el("tr", { class: cls }, el("td", {}, ...cells)));
    }
    box.append(table);
  }

  // ---- the graph ---------------------------------------------------------------------------------

  const nodes = new Map();  // entry -> {g, adj: text element of the adjoint line, stats: the one after it}
  let svg = null;
  let zoom = 1;
  let natural = null;  // the picture's own size, in Graphviz's points

  function setZoom(z) {
    zoom = Math.max(0.1, Math.min(4, z));
    svg.setAttribute("width", `${natural.w * zoom}pt`);
    svg.setAttribute("height", `${natural.h * zoom}pt`);
  }

  /** The zoom at which the whole picture fits the view, but no smaller than 0.5 nor above 1. */
  function fitZoom() {
    const view = $("graph-view");
    const px = 4 / 3;  // pixels per point
    const fit = Math.min(view.clientWidth / (natural.w * px), (view.clientHeight - 30) / (natural.h * px));
    return Math.max(0.5, Math.min(1, fit));
  }

  function insertGraph() {
    if (!data.graph) return false;
    const doc = new DOMParser().parseFromString(data.graph, "image/svg+xml");
    if (doc.querySelector("parsererror")) throw new Error("the Graphviz picture could not be read");
    svg = document.importNode(doc.documentElement, true);
    $("graph-view").append(svg);
    natural = { w: parseFloat(svg.getAttribute("width")), h: parseFloat(svg.getAttribute("height")) };
    setZoom(fitZoom());
    $("zoom-in").addEventListener("click", () => setZoom(zoom * 1.25));
    $("zoom-out").addEventListener("click", () => setZoom(zoom / 1.25));
    $("zoom-fit").addEventListener("click", () => setZoom(fitZoom()));
    for (const g of svg.querySelectorAll("g.node")) {
      const m = /^n(\d+)$/.exec(g.querySelector("title").textContent);
      if (!m) continue;
      const e = Number(m[1]);
      // The label's adjoint line ("adj ...") and the statistics line under it, if any: the replay
      // rewrites them.
      const texts = [...g.querySelectorAll("text")];
      const at = texts.findIndex((t) => t.textContent.startsWith("adj"));
      const next = at >= 0 ? texts[at + 1] : undefined;
      nodes.set(e, { g, adj: at >= 0 ? texts[at] : null,
                     stats: next && next.textContent.trim().startsWith("min ") ? next : null });
      g.dataset.entry = e;
      g.addEventListener("click", () => select(e, "graph"));
    }
    return true;
  }

  // ---- the listing -------------------------------------------------------------------------------

  const rows = new Map();  // entry -> {tr, adj: its adjoint cell, flag: its NaN/inf cell}

  function buildListing() {
    const body = $("listing").tBodies[0];
    for (const en of data.entries) {
      const adj = el("td", { class: "adj" });
      const flag = el("td", { class: "flag" });
      const tr = el("tr", { "data-entry": en.i }, el("td", {}, String(en.i)), el("td", {}, en.name),
                    el("td", {}, en.op), el("td", {}, `${en.dtype}[${en.shape.join(",")}]`),
                    el("td", {}, brief(en.value)), adj, flag);
      tr.addEventListener("click", () => select(en.i, "listing"));
      body.append(tr);
      rows.set(en.i, { tr, adj, flag });
    }
  }

  // ---- drawing the replay position -----------------------------------------------------------------

  function render() {
    const step = steps[position];
    const targets = new Set(step.c.map((c) => c.to));
    for (const en of data.entries) {
      const e = en.i;
      const adj = en.grad ? adjointAt(e, position) : null;
      const unreached = en.grad && en.adj !== null && adj === null;
      const bad = !finite(en.value) || (adj !== null && !finite(adj));
      const state = { current: e === step.e, target: targets.has(e), selected: e === selected, unreached,
                      nonfinite: bad };
      const row = rows.get(e);
      for (const [k, on] of Object.entries(state)) row.tr.classList.toggle(k, on);
      row.adj.textContent = adj ? brief(adj) : en.grad && en.adj !== null ? "—" : "";
      row.flag.textContent = bad ? "⚠ " + (finite(en.value) ? "adjoint" : "value") + " not finite" : "";
      const node = nodes.get(e);
      if (node) {
        for (const [k, on] of Object.entries(state)) node.g.classList.toggle(k, on);
        if (node.adj) node.adj.textContent = "adj " + (adj ? brief(adj) : "—");
        if (node.stats) node.stats.textContent = adj && adj.n > 1 ? "  " + stats(adj) : "";
      }
    }
    // The status line: which step this is and what it does.
    $("step-label").textContent = `step ${position} of ${last}`;
    const text = $("step-text");
    if (position === 0) {
      text.replaceChildren(el("span", { class: "key-target" }, `seed: adjoint of ${label(data.output)} = 1`));
    } else {
      const into = step.c.map((c) => label(c.to)).join(", ");
      text.replaceChildren(el("span", { class: "key-current" }, `${label(step.e)} ${entryOf.get(step.e).op}`),
                           " adds to ", el("span", { class: "key-target" }, into || "nothing"));
    }
    $("first").disabled = $("prev").disabled = position === 0;
    $("next").disabled = $("last").disabled = position === last;
    showDetail();
  }

  function go(k) {
    position = Math.max(0, Math.min(last, k));
    render();
    // Keep the entry being swept in sight (the output at the seed).
    const e = steps[position].e || data.output;
    rows.get(e).tr.scrollIntoView({ block: "nearest" });
    if (nodes.has(e)) nodes.get(e).g.scrollIntoView({ block: "nearest", inline: "nearest" });
  }

  function select(e, from) {
    if (!entryOf.has(e)) return;
    selected = e;
    render();
    // Bring the entry into view in the other view.
    if (from !== "listing") rows.get(e).tr.scrollIntoView({ block: "nearest" });
    if (from !== "graph" && nodes.has(e)) nodes.get(e).g.scrollIntoView({ block: "center", inline: "center" });
  }

  // ---- search --------------------------------------------------------------------------------------

  /** Entries matching the query: "#12" by index; else exact names, then names starting with it,
   *  then names containing it. */
  function find(query) {
    const q = query.trim();
    if (!q) return [];
    const byIndex = /^#(\d+)$/.exec(q);
    if (byIndex) return entryOf.has(Number(byIndex[1])) ? [Number(byIndex[1])] : [];
    const named = data.entries.filter((en) => en.name);
    for (const test of [(n) => n === q, (n) => n.startsWith(q), (n) => n.includes(q)]) {
      const hits = named.filter((en) => test(en.name)).map((en) => en.i);
      if (hits.length) return hits;
    }
    return [];
  }

  function markMatches(hits) {
    const set = new Set(hits);
    for (const [e, row] of rows) row.tr.classList.toggle("match", set.has(e));
    for (const [e, node] of nodes) node.g.classList.toggle("match", set.has(e));
    const q = $("search").value.trim();
    $("search-result").textContent = !q ? "" : hits.length === 0 ? "no match" :
                                     hits.length === 1 ? "1 match" : `${hits.length} matches (Enter: the first)`;
  }

  // ---- start ------------------------------------------------------------------------------------------

  function start() {
    document.title = data.title;
    $("title").textContent = data.title;
    const out = entryOf.get(data.output);
    $("summary").textContent = `${data.entries.length} entries · ${last} backward steps · ` +
                               `${out.name || "output"} = ${brief(out.value)}`;
    buildListing();
    const names = $("names");
    for (const en of data.entries) if (en.name) names.append(el("option", { value: en.name }));

    let graph = false;
    try {
      graph = insertGraph();
    } catch (err) {
      data.graphNote = String(err.message || err);
    }
    if (!graph) {
      document.body.classList.add("no-graph");
      $("note").hidden = false;
      $("note").textContent = "Listing only: " + (data.graphNote || "no graph in this page") + ".";
    }

    $("first").addEventListener("click", () => go(0));
    $("prev").addEventListener("click", () => go(position - 1));
    $("next").addEventListener("click", () => go(position + 1));
    $("last").addEventListener("click", () => go(last));
    document.addEventListener("keydown", (ev) => {
      if (ev.target === $("search") || ev.altKey || ev.ctrlKey || ev.metaKey) return;
      const to = { ArrowRight: position + 1, ArrowLeft: position - 1, Home: 0, End: last }[ev.key];
      if (to === undefined) return;
      ev.preventDefault();
      go(to);
    });
    const search = $("search");
    search.addEventListener("input", () => markMatches(find(search.value)));
    search.addEventListener("keydown", (ev) => {
      if (ev.key === "Enter") {
        const hits = find(search.value);
        markMatches(hits);
        if (hits.length) select(hits[0], "search");
      } else if (ev.key === "Escape") {
        search.value = "";
        markMatches([]);
        search.blur();
      }
    });
    select(data.output, "start");
  }

  // Any error while starting is shown on the page rather than leaving it blank.
  try {
    start();
  } catch (err) {
    $("errors").hidden = false;
    $("errors").textContent = "The explorer failed to start: " + (err.stack || err);
    throw err;
  }
})();
