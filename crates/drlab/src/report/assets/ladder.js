// drlab scenario report: one case's ladder diagram. Time runs down, one row per happening
// (a message, a journal event, an assertion decided, the fault and its heal); one column per
// lane (node or actor), grouped by DC. Above VIRTUAL_ABOVE rows only the rows in view are drawn.
"use strict";
(function () {
  const t0 = performance.now();
  const data = JSON.parse(document.getElementById("data").textContent);
  const run = data.case;
  const NS = "http://www.w3.org/2000/svg";
  const GUTTER = 92, VIRTUAL_ABOVE = 1500, OVERSCAN = 40;
  let LANE_W = 110;
  const PROTOS = ["sip", "tlib", "tc", "http", "other"];
  const KEEPALIVE = /(^|\s)(Ping|Pong)$|^OPTIONS /;
  const st = { rowH: 18, protos: new Set(PROTOS), keepalives: false, events: true,
               hidden: new Set(), find: "", key: null, selected: null };

  // Lanes: the run's, plus "?" for peers the run could not name.
  const lanes = run.lanes.slice();
  const known = new Set(lanes.map(l => l.name));
  if (data.arrows.some(a => !known.has(a.from) || !known.has(a.to))) {
    lanes.push({ name: "?", group: "elsewhere", kind: "unknown" });
  }
  const laneOf = n => (known.has(n) ? n : "?");

  // The fault: from its injection to the first heal after it (else the end of the run).
  const heal = run.events.find(e => (e.kind === "fault.cleared" || e.kind === "fault.removed")
    && e.at_ms >= run.fault_ms);
  const healMs = heal ? heal.at_ms : run.ended_ms;
  const glob = p => new RegExp("^" + p.split("*").map(s => s.replace(/[.+?^${}()|[\]\\]/g, "\\$&")).join(".*") + "$");
  const rules = run.events.filter(e => e.kind === "fault.added").map(e => {
    const link = String((e.detail && e.detail.link) || "");
    return { node: e.source, link, re: glob(link), proto: link.split(":")[0], at: e.at_ms };
  });
  const cutLanes = new Set();
  // A crashed node is cut from everything.
  const crashed = run.events.filter(e => e.kind === "node.crashed" && e.at_ms >= run.fault_ms).map(e => e.source);
  crashed.forEach(n => cutLanes.add(n));
  for (const r of rules) {
    cutLanes.add(r.node);
    for (const l of lanes) if (l.name !== "?" && r.link.includes(l.name)) cutLanes.add(l.name);
  }
  const isCut = a => a.t0 >= run.fault_ms && a.t0 <= healMs && rules.some(r =>
    (r.node === a.from || r.node === a.to) && r.proto === a.link.split(":")[0] &&
    (r.re.test(a.link) || r.link.includes(r.node === a.from ? a.to : a.from)));
  data.arrows.forEach(a => { a.proto = PROTOS.includes(a.proto) ? a.proto : "other"; a.cut = isCut(a); });

  const el = (name, attrs, parent) => {
    const e = document.createElementNS(NS, name);
    for (const k in attrs) e.setAttribute(k, attrs[k]);
    if (parent) parent.appendChild(e);
    return e;
  };
  const clip = (s, n) => (s.length > n ? s.slice(0, n - 1) + "…" : s);
  const rel = t => { const d = (t - run.fault_ms) / 1000; return (d < 0 ? "T" : "T+") + d.toFixed(3) + "s"; };

  // ---- header facts and controls
  const passed = run.checks.filter(c => c.pass).length;
  const verdict = document.getElementById("verdict");
  verdict.textContent = run.checks.length && passed === run.checks.length ? "pass" : "FAIL";
  verdict.className = verdict.textContent === "pass" ? "pass" : "fail";
  document.getElementById("facts").textContent = passed + " of " + run.checks.length +
    " ids passed · " + ((run.ended_ms - run.started_ms) / 1000).toFixed(1) + " s · " +
    data.arrows.length + " messages · " + run.events.length + " journal events";
  const protoBox = document.getElementById("protofilter");
  for (const p of PROTOS) {
    const label = document.createElement("label");
    label.innerHTML = '<input type="checkbox" checked data-proto="' + p + '"> ' + p;
    protoBox.appendChild(label);
  }
  const laneBox = document.getElementById("lanefilter");
  for (const l of lanes) {
    const label = document.createElement("label");
    const box = document.createElement("input");
    box.type = "checkbox"; box.checked = true; box.dataset.lane = l.name;
    label.append(box, " " + l.name);
    laneBox.appendChild(label);
  }
  document.getElementById("controls").addEventListener("change", ev => {
    const t = ev.target;
    if (t.dataset.proto) { t.checked ? st.protos.add(t.dataset.proto) : st.protos.delete(t.dataset.proto); }
    else if (t.dataset.lane) { t.checked ? st.hidden.delete(t.dataset.lane) : st.hidden.add(t.dataset.lane); }
    else if (t.id === "keepalives") st.keepalives = t.checked;
    else if (t.id === "showevents") st.events = t.checked;
    layout();
  });
  document.getElementById("find").addEventListener("input", ev => { st.find = ev.target.value.toLowerCase(); layout(); });
  document.getElementById("zoomin").onclick = () => { st.rowH = Math.min(40, st.rowH + 4); layout(); };
  document.getElementById("zoomout").onclick = () => { st.rowH = Math.max(6, st.rowH - 4); layout(); };
  const hash = new URLSearchParams(location.hash.slice(1));
  if (hash.get("find")) { st.find = hash.get("find").toLowerCase(); document.getElementById("find").value = hash.get("find"); }

  // ---- rows
  let items = [], cols = new Map(), svg = document.getElementById("ladder"), rowsLayer = null, drawn = new Set();
  const scroller = document.getElementById("scroller");
  const ORDER = { fault: 0, heal: 0, arrow: 1, event: 2, check: 3 };

  function wanted(a) {
    if (!st.protos.has(a.proto)) return false;
    if (st.hidden.has(laneOf(a.from)) || st.hidden.has(laneOf(a.to))) return false;
    if (!st.keepalives && KEEPALIVE.test(a.summary)) return false;
    return !st.find || a.summary.toLowerCase().includes(st.find) || (a.key || "").toLowerCase() === st.find;
  }

  function buildItems() {
    const out = [];
    data.arrows.forEach((a, i) => { if (wanted(a)) out.push({ t: a.t0, type: "arrow", i }); });
    if (st.events) run.events.forEach((e, i) => {
      if (known.has(e.source) && !st.hidden.has(e.source) &&
          (!st.find || e.kind.toLowerCase().includes(st.find))) out.push({ t: e.at_ms, type: "event", i });
    });
    run.checks.forEach((c, i) => out.push({ t: c.at_ms, type: "check", i }));
    out.push({ t: run.fault_ms, type: "fault" });
    if (heal) out.push({ t: healMs, type: "heal" });
    out.sort((x, y) => x.t - y.t || ORDER[x.type] - ORDER[y.type]);
    return out;
  }

  const rowY = i => 8 + (i + 0.5) * st.rowH;
  function firstAt(t) { let lo = 0, hi = items.length; while (lo < hi) { const m = (lo + hi) >> 1; if (items[m].t < t) lo = m + 1; else hi = m; } return lo; }

  function layout() {
    items = buildItems();
    const visible = lanes.filter(l => !st.hidden.has(l.name));
    // As wide as the view allows, within reason.
    LANE_W = Math.max(72, Math.min(130, Math.floor((scroller.clientWidth - GUTTER - 24) / Math.max(1, visible.length))));
    cols = new Map(visible.map((l, i) => [l.name, GUTTER + (i + 0.5) * LANE_W]));
    const width = GUTTER + visible.length * LANE_W + 24;
    const height = rowY(items.length) + st.rowH;
    svg.innerHTML = "";
    svg.setAttribute("width", width); svg.setAttribute("height", height);
    const defs = el("defs", {}, svg);
    for (const p of PROTOS) {
      const m = el("marker", { id: "ah-" + p, viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" }, defs);
      el("path", { d: "M0,0 L10,5 L0,10 z", style: "fill: var(--" + p + ")" }, m);
    }
    // The fault band, across every lane, from the fault's row to the heal's.
    const f = firstAt(run.fault_ms), h = Math.max(f, firstAt(healMs + 1) - 1);
    const bandTop = rowY(f) - st.rowH / 2, bandBottom = rowY(h) + st.rowH / 2;
    el("rect", { id: "band", class: "band", x: GUTTER - 4, y: bandTop, width: width - GUTTER, height: bandBottom - bandTop }, svg);
    el("line", { class: "bandedge", x1: 0, x2: width, y1: bandTop, y2: bandTop }, svg);
    el("line", { class: "bandedge", x1: 0, x2: width, y1: bandBottom, y2: bandBottom }, svg);
    // Lane lines, broken (dashed) inside the band for the lanes the fault cuts.
    for (const l of visible) {
      const x = cols.get(l.name);
      el("line", { class: "laneline", x1: x, x2: x, y1: 0, y2: height }, svg);
      if (cutLanes.has(l.name)) el("line", { class: "laneline cut", x1: x + 3, x2: x + 3, y1: bandTop, y2: bandBottom }, svg);
    }
    laneHeader(visible, width);
    rowsLayer = el("g", { id: "rows" }, svg);
    drawn = new Set();
    drawVisible();
    overview();
  }

  function laneHeader(visible, width) {
    const head = document.getElementById("lanehead");
    head.innerHTML = ""; head.style.width = width + "px";
    let i = 0;
    while (i < visible.length) {
      let j = i; while (j < visible.length && visible[j].group === visible[i].group) j++;
      const g = document.createElement("div");
      g.className = "group"; g.textContent = visible[i].group || "";
      g.style.left = (GUTTER + i * LANE_W + 4) + "px"; g.style.width = ((j - i) * LANE_W - 8) + "px";
      head.appendChild(g); i = j;
    }
    visible.forEach((l, k) => {
      const d = document.createElement("div");
      d.className = "lane" + (cutLanes.has(l.name) ? " cut" : "");
      d.dataset.lane = l.name; d.title = l.kind + " " + l.name;
      d.textContent = l.name;
      d.style.left = (GUTTER + k * LANE_W) + "px"; d.style.width = LANE_W + "px";
      head.appendChild(d);
    });
  }

  function drawVisible() {
    let from = 0, to = items.length;
    if (items.length > VIRTUAL_ABOVE) {
      from = Math.max(0, Math.floor((scroller.scrollTop - 48) / st.rowH) - OVERSCAN);
      to = Math.min(items.length, Math.ceil((scroller.scrollTop + scroller.clientHeight) / st.rowH) + OVERSCAN);
      // Rows far from view go, so the DOM stays small however long the run.
      for (const node of Array.from(rowsLayer.children)) {
        const r = +node.dataset.row;
        if (r < from - OVERSCAN || r >= to + OVERSCAN) { node.remove(); drawn.delete(r); }
      }
    }
    for (let r = from; r < to; r++) if (!drawn.has(r)) { drawRow(r); drawn.add(r); }
    document.body.dataset.drawn = drawn.size;
  }
  let pending = false;
  scroller.addEventListener("scroll", () => {
    if (items.length <= VIRTUAL_ABOVE || pending) return;
    pending = true;
    requestAnimationFrame(() => { pending = false; drawVisible(); });
  });

  function drawRow(r) {
    const it = items[r], y = rowY(r);
    const g = el("g", { "data-row": r }, rowsLayer);
    if (st.selected === r) el("rect", { class: "rowhl", x: 0, y: y - st.rowH / 2, width: svg.getAttribute("width"), height: st.rowH }, g);
    const small = st.rowH < 12;
    if (!small) el("text", { class: "time", x: 4, y: y + 3 }, g).textContent = rel(it.t);
    if (it.type === "arrow") {
      const a = data.arrows[it.i], x1 = cols.get(laneOf(a.from)), x2 = cols.get(laneOf(a.to));
      g.setAttribute("class", "arrow " + a.proto + (a.cut ? " cut" : "") + (st.key && a.key === st.key ? " hl" : ""));
      g.dataset.kind = "arrow"; g.dataset.i = it.i; g.dataset.summary = a.summary;
      g.dataset.from = a.from; g.dataset.to = a.to;
      const self = x1 === x2, xe = self ? x1 + 30 : x2;
      el("line", { x1, x2: xe, y1: y, y2: y, "marker-end": "url(#ah-" + a.proto + ")" }, g);
      if (a.cut) {
        const xm = (x1 + xe) / 2;
        el("line", { class: "brk", x1: xm - 4, x2: xm + 4, y1: y - 5, y2: y + 5 }, g);
        el("line", { class: "brk", x1: xm - 4, x2: xm + 4, y1: y + 5, y2: y - 5 }, g);
      }
      if (!small) {
        const tx = el("text", { x: (x1 + xe) / 2, y: y - 3, "text-anchor": "middle" }, g);
        tx.textContent = clip(a.summary, Math.max(18, Math.abs(xe - x1) / 6 + 12));
      }
      el("title", {}, g).textContent = a.summary + "\n" + a.link + " " + a.from + " → " + a.to +
        (a.t1 > a.t0 ? " (" + (a.t1 - a.t0) + " ms)" : "");
    } else if (it.type === "event") {
      const e = run.events[it.i], x = cols.get(e.source);
      g.setAttribute("class", "event"); g.dataset.kind = "event"; g.dataset.i = it.i;
      el("path", { d: `M${x},${y - 5} L${x + 5},${y} L${x},${y + 5} L${x - 5},${y} z` }, g);
      if (!small) el("text", { x: x + 8, y: y + 3 }, g).textContent = clip(e.kind, 30);
      el("title", {}, g).textContent = e.source + " " + e.kind + " " + JSON.stringify(e.detail);
    } else if (it.type === "check") {
      const c = run.checks[it.i];
      g.setAttribute("class", "marker " + (c.pass ? "pass" : "fail"));
      g.dataset.kind = "check"; g.dataset.id = c.id; g.dataset.i = it.i;
      el("circle", { cx: GUTTER - 10, cy: y, r: 5 }, g);
      el("rect", { x: GUTTER, y: y - 1, width: cols.size * LANE_W, height: 2, opacity: 0.35 }, g);
      // The row is the marker's own: its label can sit across the lanes.
      const label = el("text", { x: GUTTER + 4, y: y - 3 }, g);
      label.textContent = c.id + (c.pass ? " ✔ " : " ✘ ") + clip(c.statement, 90);
      el("title", {}, g).textContent = c.id + ": " + c.statement + "\n" + (c.pass ? "proven: " : "FAIL: ") + c.evidence;
    } else {
      const what = crashed.map(n => n + " crashed").concat(rules.map(r => r.node + " " + r.link));
      const label = it.type === "fault" ? "fault" + (what.length ? ": " + what.join(", ") : "")
                                        : "healed (" + heal.source + " " + heal.kind + ")";
      el("text", { class: "bandlabel", x: GUTTER + 4, y: y + 4 }, g).textContent = clip(label, 120);
    }
  }

  // ---- the overview: the whole run in proportion, the band, every assertion's marker
  function overview() {
    const box = document.getElementById("overview");
    box.innerHTML = "";
    const W = Math.max(400, box.clientWidth || 1000), H = 46;
    const o = el("svg", { id: "overviewsvg", viewBox: `0 0 ${W} ${H}` }, box);
    const span = Math.max(1, run.ended_ms - run.started_ms);
    const X = t => 6 + (W - 12) * Math.min(1, Math.max(0, (t - run.started_ms) / span));
    el("rect", { class: "band", x: X(run.fault_ms), y: 0, width: Math.max(2, X(healMs) - X(run.fault_ms)), height: H }, o);
    const buckets = new Array(200).fill(0);
    for (const it of items) if (it.type === "arrow") buckets[Math.min(199, Math.floor((X(it.t) - 6) / (W - 12) * 200))]++;
    const peak = Math.max(1, ...buckets);
    buckets.forEach((n, i) => { if (n) el("rect", { x: 6 + i * (W - 12) / 200, y: H - 2 - 18 * n / peak, width: (W - 12) / 200, height: 18 * n / peak, fill: "#8c959f" }, o); });
    run.checks.forEach((c, i) => {
      const g = el("g", { class: "marker " + (c.pass ? "pass" : "fail"), "data-id": c.id, "data-kind": "check", "data-i": i }, o);
      el("circle", { cx: X(c.at_ms), cy: 8 + (i % 3) * 8, r: 4 }, g);
      el("title", {}, g).textContent = c.id + ": " + c.statement + "\n" + (c.pass ? "proven: " : "FAIL: ") + c.evidence;
    });
  }

  // ---- clicks: the whole message, the evidence, the event's details
  const detail = document.getElementById("detail");
  const esc = s => String(s).replace(/[&<>]/g, ch => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;" }[ch]));
  function redraw() { rowsLayer.innerHTML = ""; drawn = new Set(); drawVisible(); }
  function scrollToRow(row) { scroller.scrollTop = Math.max(0, rowY(row) - scroller.clientHeight / 3); st.selected = row; redraw(); }
  document.body.addEventListener("click", ev => {
    const g = ev.target.closest("[data-kind]");
    if (!g) return;
    const i = +g.dataset.i;
    if (g.dataset.kind === "arrow") {
      const a = data.arrows[i];
      st.key = a.key || null;
      detail.innerHTML = "<h3>" + esc(a.summary) + "</h3><p>" + esc(a.from + " → " + a.to) + " · " + esc(a.link) + " · " +
        rel(a.t0) + (a.t1 > a.t0 ? " → " + rel(a.t1) : "") + (a.key ? " · key " + esc(a.key) : "") +
        (a.cut ? ' · <b class="fail">sent while the link was cut</b>' : "") + "</p><pre>" + esc(a.message) + "</pre>";
      redraw();
    } else if (g.dataset.kind === "check") {
      const c = run.checks[i];
      detail.innerHTML = '<h3 class="' + (c.pass ? "pass" : "fail") + '">' + esc(c.id) + (c.pass ? " pass" : " FAIL") +
        "</h3><p>" + esc(c.statement) + "</p><p>" + (c.ms != null ? "after " + c.ms + " ms · " : "") + rel(c.at_ms) +
        '</p><h4>evidence</h4><pre id="evidence">' + esc(c.evidence) + "</pre>";
      const row = items.findIndex(it => it.type === "check" && it.i === i);
      // The evidence is the entry just before the marker: show it.
      let ev2 = row;
      while (ev2 > 0 && items[ev2 - 1].t === items[row].t) ev2--;
      scrollToRow(Math.max(0, ev2 > 0 ? ev2 - 1 : row));
    } else if (g.dataset.kind === "event") {
      const e = run.events[i];
      detail.innerHTML = "<h3>" + esc(e.source + " " + e.kind) + "</h3><p>" + rel(e.at_ms) + "</p><pre>" +
        esc(JSON.stringify(e.detail, null, 2)) + "</pre>";
    }
  });

  // Media is counted, not captured: the streams, in the panel until something is clicked.
  if (data.media.length) {
    const rows = data.media.map(m => '<tr title="' + esc(m.peer) + " · " + m.bytes + ' bytes"><td>' + esc(m.node) +
      "</td><td>" + esc(m.link) + "</td><td>" + esc(m.dir) + "</td><td>" + m.packets + "</td><td>" +
      rel(m.first_ms) + " … " + rel(m.last_ms) + "</td></tr>").join("");
    detail.insertAdjacentHTML("beforeend", '<h4>media</h4><table class="runs" id="media"><tr><th>lane</th><th>link</th>' +
      "<th>dir</th><th>packets</th><th>from … to</th></tr>" + rows + "</table>");
  }
  layout();
  // `#at=fault` opens the page at the fault (what the docs' pictures show).
  if (hash.get("at") === "fault") {
    scroller.scrollTop = Math.max(0, rowY(firstAt(run.fault_ms)) - 6 * st.rowH);
    drawVisible();
  }
  document.body.dataset.items = items.length;
  document.body.dataset.renderMs = (performance.now() - t0).toFixed(1);
})();
