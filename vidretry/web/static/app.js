// vidretry's console: the one script of every page (no inline script: the CSP forbids it).
// It asks before an action marked data-confirm, and keeps the overview current from
// /api/events (one snapshot for every tab, read by the server at most once a second).
"use strict";

document.addEventListener("submit", (event) => {
  const form = event.target;
  const question = form.getAttribute("data-confirm");
  if (question && !window.confirm(question)) {
    event.preventDefault();
  }
});

function showOverview(o) {
  for (const [state, n] of Object.entries(o.counts)) {
    const el = document.querySelector(`[data-count="${state}"]`);
    if (el) el.textContent = String(n);
  }
  const fields = {
    failed_last_hour: o.failed_last_hour,
    outbox_waiting: o.outbox_waiting,
    outbox_dead: o.outbox_dead,
    leader: o.leader || "none",
    telegram: o.telegram ? "connected" : "not connected",
    queue_state: o.paused ? "paused" : "running",
    generator: o.generator,
    releases: o.releases,
    releases_warning: o.releases_warning || "",
  };
  for (const [name, value] of Object.entries(fields)) {
    for (const el of document.querySelectorAll(`[data-field="${name}"]`)) {
      el.textContent = String(value);
    }
  }
  const chart = document.getElementById("chart");
  if (chart) chart.innerHTML = o.chart; // drawn by the server: numbers only
  const live = document.getElementById("live");
  if (live) live.textContent = "live · " + new Date().toLocaleTimeString();
  const paused = document.getElementById("queue-state");
  if (paused && (paused.dataset.was || paused.textContent) !== fields.queue_state) {
    // The pause and resume buttons belong to the state: reload to get the right one.
    window.location.reload();
  }
}

if (document.getElementById("counts")) {
  const state = document.getElementById("queue-state");
  if (state) state.dataset.was = state.textContent;
  const events = new EventSource("/api/events");
  events.addEventListener("overview", (event) => showOverview(JSON.parse(event.data)));
  events.addEventListener("error", () => {
    const live = document.getElementById("live");
    if (live) live.textContent = "reconnecting…";
  });
}
