// hookgate console: live outcomes over Server-Sent Events. The pages
// work without it; this only adds rows as attempts happen.
"use strict";
(function () {
  var box = document.querySelector("[data-live]");
  if (!box || !window.EventSource) return;
  var rows = document.getElementById("live-rows");
  var table = document.getElementById("live-table");
  var empty = document.getElementById("live-empty");
  var state = document.getElementById("live-state");
  var prefix = document.body.getAttribute("data-prefix") || "";
  var keep = 50;

  function setState(text, on) {
    state.textContent = text;
    state.className = "live-state" + (on ? " on" : "");
    box.setAttribute("data-live-state", on ? "on" : "off");
  }
  function cell(tr, text, cls) {
    var td = document.createElement("td");
    if (cls) td.className = cls;
    td.textContent = text;
    tr.appendChild(td);
    return td;
  }
  function badge(td, text, cls) {
    var s = document.createElement("span");
    s.className = "badge " + cls;
    s.textContent = text;
    td.appendChild(s);
  }
  function ms(v) {
    return v < 10 ? v.toFixed(1) + " ms" : v < 10000 ? Math.round(v) + " ms" : (v / 1000).toFixed(1) + " s";
  }
  function add(o) {
    var tr = document.createElement("tr");
    tr.className = "fresh";
    cell(tr, (o.time || "").replace("T", " ").replace(/\.\d+/, ""));
    var td = document.createElement("td");
    var a = document.createElement("a");
    a.className = "id";
    a.href = prefix + "/events/" + encodeURIComponent(o.event) + "#d-" + o.delivery;
    a.textContent = o.delivery;
    td.appendChild(a);
    tr.appendChild(td);
    cell(tr, o.route);
    cell(tr, String(o.attempt));
    var st = o.status === "retry" ? "retry" : o.status;
    badge(cell(tr, ""), st, o.status === "delivered" ? "st-delivered" : o.status === "dead" ? "st-dead" : "st-pending");
    cell(tr, o.http_status ? String(o.http_status) : "–");
    cell(tr, ms(o.duration_ms || 0));
    cell(tr, (o.class ? o.class + ": " : "") + (o.error || ""), "err");
    rows.insertBefore(tr, rows.firstChild);
    while (rows.children.length > keep) rows.removeChild(rows.lastChild);
    table.hidden = false;
    // The event page keeps its hint: the rows above are from before.
    if (!box.hasAttribute("data-reload")) empty.hidden = true;
  }

  var es = new EventSource(box.getAttribute("data-live"));
  setState("connecting", false);
  es.onopen = function () { setState("live", true); };
  es.onerror = function () { setState(es.readyState === 2 ? "off" : "reconnecting", false); };
  es.addEventListener("outcome", function (e) {
    try { add(JSON.parse(e.data)); } catch (err) { /* a malformed line is skipped */ }
  });
  es.addEventListener("dropped", function (e) {
    setState("missed " + e.data + " — reload for the full list", true);
  });
  window.addEventListener("pagehide", function () { es.close(); });
})();
