// taskbus overview: refreshes the topic counters from /api/stats without a reload.
// The interval is chosen in the page (kept in localStorage); "off" stops polling.
(function () {
  "use strict";
  var table = document.getElementById("topics");
  var select = document.getElementById("interval");
  var state = document.getElementById("live-state");
  if (!table || !select) return;
  var body = table.tBodies[0];
  var names = ["ready", "pending", "delayed", "leased", "done", "failed", "dead"];
  var timer = null;

  var saved = null;
  try { saved = window.localStorage.getItem("taskbus.interval"); } catch (e) { saved = null; }
  select.value = saved !== null ? saved : "2000";
  if (select.selectedIndex < 0) select.value = "2000";

  function row(topic) {
    var rows = body.querySelectorAll("tr[data-topic]");
    for (var i = 0; i < rows.length; i++) {
      if (rows[i].getAttribute("data-topic") === topic) return rows[i];
    }
    var tr = document.createElement("tr");
    tr.setAttribute("data-topic", topic);
    var th = document.createElement("th");
    th.setAttribute("scope", "row");
    var a = document.createElement("a");
    a.href = "/topic?name=" + encodeURIComponent(topic);
    a.textContent = topic;
    th.appendChild(a);
    tr.appendChild(th);
    names.forEach(function (name) {
      var td = document.createElement("td");
      td.className = "num";
      td.setAttribute("data-counter", name);
      tr.appendChild(td);
    });
    body.appendChild(tr);
    var none = document.getElementById("no-topics");
    if (none) none.remove();
    return tr;
  }

  function show(stats) {
    Object.keys(stats.topics || {}).sort().forEach(function (topic) {
      var counts = stats.topics[topic];
      var tr = row(topic);
      names.forEach(function (name) {
        var td = tr.querySelector('td[data-counter="' + name + '"]');
        var text = String(counts[name]);
        if (td && td.textContent !== text) {
          td.textContent = text;
          td.classList.add("changed");
          window.setTimeout(function () { td.classList.remove("changed"); }, 700);
        }
      });
    });
    state.textContent = new Date().toLocaleTimeString();
  }

  function poll() {
    fetch("/api/stats", { credentials: "same-origin", headers: { "accept": "application/json" } })
      .then(function (r) { if (!r.ok) throw new Error("HTTP " + r.status); return r.json(); })
      .then(show)
      .catch(function (e) { state.textContent = String(e.message || e); })
      .then(schedule);
  }

  function schedule() {
    window.clearTimeout(timer);
    var every = parseInt(select.value, 10);
    if (every > 0 && !document.hidden) timer = window.setTimeout(poll, every);
  }

  select.addEventListener("change", function () {
    try { window.localStorage.setItem("taskbus.interval", select.value); } catch (e) { /* private mode */ }
    if (parseInt(select.value, 10) > 0) poll(); else { window.clearTimeout(timer); state.textContent = select.getAttribute("data-off"); }
  });
  document.addEventListener("visibilitychange", function () { if (!document.hidden) poll(); else window.clearTimeout(timer); });
  schedule();
})();
