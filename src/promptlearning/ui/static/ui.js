// promptlearning UI: filter and sort tables, follow a run in progress. No libraries.
"use strict";

// Every request the UI's scripts make carries this header: with the session cookie alone a
// cross-site page could not send it, so the server accepts the cookie for scripted POSTs only with it.
window.uiFetch = (url, options = {}) =>
  fetch(url, { ...options, credentials: "same-origin",
               headers: { "x-promptlearning-ui": "1", ...(options.headers || {}) } });

function filterTable(input) {
  const table = document.getElementById(input.dataset.filterTable);
  const needle = input.value.trim().toLowerCase();
  for (const row of table.tBodies[0].rows) {
    row.hidden = needle !== "" && !row.textContent.toLowerCase().includes(needle);
  }
}

function sortTable(button) {
  const th = button.closest("th"), table = th.closest("table");
  const column = [...th.parentNode.children].indexOf(th);
  const numeric = button.dataset.sort === "number";
  const ascending = th.getAttribute("aria-sort") !== "ascending";
  for (const other of th.parentNode.children) other.removeAttribute("aria-sort");
  th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
  const key = (row) => {
    const cell = row.cells[column];
    if (!numeric) return cell.textContent.trim().toLowerCase();
    const value = parseFloat(cell.dataset.value);
    return Number.isNaN(value) ? -Infinity : value;
  };
  const rows = [...table.tBodies[0].rows];
  rows.sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0) * (ascending ? 1 : -1));
  table.tBodies[0].append(...rows);
}

function followRun(section) {
  const status = document.getElementById("progress-status");
  const source = new EventSource("/ui/events?id=" + encodeURIComponent(section.dataset.run));
  source.onmessage = (event) => {
    const state = JSON.parse(event.data);
    if (state.status !== "running") {
      source.close();
      status.textContent = "The run has finished: reloading.";
      window.location.reload();
      return;
    }
    document.getElementById("progress-step").textContent = state.step;
    document.getElementById("progress-bar").value = state.step;
    const body = document.querySelector("#progress-table tbody");
    body.replaceChildren();
    for (const [seed, seedState] of Object.entries(state.seeds)) {
      for (const point of seedState.history) {
        const row = body.insertRow();
        const metrics = Object.entries(point).filter(([k]) => k !== "step")
          .map(([k, v]) => `${k} ${typeof v === "number" ? v.toFixed(4) : v}`).join("  ");
        for (const text of [seed, point.step, metrics]) row.insertCell().textContent = text;
      }
    }
    status.textContent = `Updated ${new Date().toLocaleTimeString()}.`;
  };
  source.onerror = () => { status.textContent = "Lost the connection to the server; retrying…"; };
}

document.addEventListener("DOMContentLoaded", () => {
  for (const input of document.querySelectorAll("[data-filter-table]")) {
    input.addEventListener("input", () => filterTable(input));
  }
  for (const button of document.querySelectorAll("th button[data-sort]")) {
    button.addEventListener("click", () => sortTable(button));
  }
  const live = document.getElementById("live");
  if (live) followRun(live);
  const form = document.getElementById("runs-form");
  if (form) {
    form.addEventListener("submit", (event) => {
      if (form.querySelectorAll("input[name=run]:checked").length < 2) {
        event.preventDefault();
        alert("Tick at least two runs of the same eval data to compare.");
      }
    });
  }
});
