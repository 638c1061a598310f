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

const PROGRESS_EVERY_MS = 3000;

// A run still going: its progress is asked for every few seconds (while the tab is visible) and the
// page reloads when the run has finished.
function followRun(section) {
  const status = document.getElementById("progress-status");
  const url = "/ui/progress?id=" + encodeURIComponent(section.dataset.run);
  const poll = async () => {
    if (document.visibilityState === "visible") {
      try {
        const response = await window.uiFetch(url);
        if (!response.ok) throw new Error(`HTTP ${response.status}`);
        const state = await response.json();
        if (state.status !== "running") {
          status.textContent = "The run has finished: reloading.";
          window.location.reload();
          return;
        }
        showProgress(state);
        status.textContent = `Updated ${new Date().toLocaleTimeString()}.`;
      } catch (error) {
        status.textContent = `Could not reach the server (${error.message}); retrying.`;
      }
    }
    setTimeout(poll, PROGRESS_EVERY_MS);
  };
  setTimeout(poll, PROGRESS_EVERY_MS);
}

function showProgress(state) {
  document.getElementById("progress-step").textContent = state.step;
  document.getElementById("progress-bar").value = state.step;
  const body = document.querySelector("#progress-table tbody");
  body.replaceChildren();
  for (const [part, partState] of Object.entries(state.parts)) {
    for (const point of partState.history) {
      const row = body.insertRow();
      const metrics = Object.entries(point).filter(([k]) => k !== "step")
        .map(([k, v]) => `${k} ${typeof v === "number" ? v.toFixed(4) : v}`).join("  ");
      for (const text of [part, point.step, metrics]) row.insertCell().textContent = text;
    }
  }
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
