// steprun dashboard: live refresh of server-rendered fragments, and the loss chart.
// Served from the service itself (the Content-Security-Policy allows no other script).
"use strict";

function debounce(fn, ms) {
  let timer = null;
  return () => {
    clearTimeout(timer);
    timer = setTimeout(fn, ms);
  };
}

async function refresh(el) {
  const response = await fetch(el.dataset.src, { credentials: "same-origin" });
  if (response.status === 401) {
    location.href = "/ui/login?next=" + encodeURIComponent(location.pathname);
    return;
  }
  if (response.ok) el.innerHTML = await response.text();
}

// The runs list and a run's page follow the service's server-sent events.
function live(el, wanted) {
  const update = debounce(() => refresh(el), 300);
  const source = new EventSource(el.dataset.live);
  source.addEventListener("changed", (event) => {
    if (!wanted || event.data === wanted) update();
  });
  // Durations of running steps grow even when nothing is reported.
  setInterval(() => {
    if (el.querySelector(".badge.running")) update();
  }, 5000);
}

function drawChart(chart, data) {
  if (!data.figure || typeof Plotly === "undefined") return;
  const fig = data.figure;
  Plotly.react(chart, fig.data, fig.layout, { displaylogo: false, responsive: true });
  chart.dataset.points = String(data.points);
  const set = (id, text) => {
    const node = document.getElementById(id);
    if (node) node.textContent = text;
  };
  set("job-status", data.status);
  set("job-eta", data.eta || "—");
  set("job-points", String(data.points));
  set("job-checkpoints", data.checkpoints.length ? data.checkpoints.join(", ") : "—");
  if (data.job && data.job.fine_tuned_model) set("job-model", data.job.fine_tuned_model);
  const badge = document.getElementById("job-status");
  if (badge) badge.className = "badge " + data.status;
  if (data.terminal) {
    const cancel = document.getElementById("cancel-job");
    if (cancel) cancel.remove();
  }
}

function chart(el) {
  let data = JSON.parse(el.dataset.initial);
  drawChart(el, data);
  const poll = async () => {
    if (data.terminal) return;
    const response = await fetch(el.dataset.src, { credentials: "same-origin" });
    if (response.ok) {
      data = await response.json();
      drawChart(el, data);
    }
    setTimeout(poll, 2000);
  };
  setTimeout(poll, 2000);
}

document.addEventListener("DOMContentLoaded", () => {
  const rows = document.getElementById("runs-rows");
  if (rows) live(rows, null);
  const body = document.getElementById("run-body");
  if (body) live(body, body.dataset.run);
  const el = document.getElementById("chart");
  if (el) chart(el);
  for (const form of document.querySelectorAll("form.step-form")) {
    form.addEventListener("submit", (event) => event.preventDefault());
  }
});
