// Rank grids: one radio group per text and criterion (name "fluency-B", value = rank).
// Moving a ranked text to a rank another text holds swaps the two, so a complete ranking stays
// complete. A text ranked for the first time can't give anything back, so the clash is left in
// place and shown rather than silently unranking the other text. Submitting is held back until
// every text has its own rank. The server checks all of it again; this only spares a round trip.
"use strict";
(function () {
  const form = document.querySelector("form.ranking-form");
  if (!form) return;
  form.noValidate = true; // our own messages instead of the browser's bubble on a single radio
  const grids = Array.from(form.querySelectorAll("fieldset.rank-grid"));
  const formStatus = form.querySelector(".form-status");

  const text = (name) => name.slice(name.lastIndexOf("-") + 1);
  // ["fluency-A", "fluency-B", "fluency-C"] -> "texts A, B and C"
  function list(names) {
    const labels = names.map(text);
    if (labels.length === 1) return "text " + labels[0];
    return "texts " + labels.slice(0, -1).join(", ") + " and " + labels[labels.length - 1];
  }

  function state(grid) {
    const names = Array.from(new Set(Array.from(grid.querySelectorAll("input[type=radio]"), (r) => r.name)));
    const missing = names.filter((n) => !grid.querySelector(`input[name="${n}"]:checked`));
    const holders = new Map();
    grid.querySelectorAll("input[type=radio]:checked").forEach((r) => {
      holders.set(r.value, (holders.get(r.value) || []).concat(r.name));
    });
    const ties = Array.from(holders.values()).filter((names) => names.length > 1);
    return { missing, ties };
  }

  function problem(grid) {
    const { missing, ties } = state(grid);
    if (ties.length) return `${list(ties[0])} have the same rank; give each text its own rank.`;
    if (missing.length) return `still to rank: ${list(missing)}.`;
    return "";
  }

  function refresh(grid) {
    const { missing, ties } = state(grid);
    const tied = new Set(ties.flat());
    grid.querySelectorAll("tbody tr").forEach((row) => {
      const radio = row.querySelector("input[type=radio]");
      row.classList.toggle("tie", tied.has(radio.name));
    });
    const done = missing.length === 0 && ties.length === 0;
    grid.classList.toggle("complete", done);
    const p = problem(grid);
    grid.querySelector(".grid-status").textContent = done ? "\u2713 Every text has its own rank." : p[0].toUpperCase() + p.slice(1);
  }

  grids.forEach((grid) => {
    const held = new Map(); // radio group name -> rank it holds
    grid.querySelectorAll("input[type=radio]:checked").forEach((r) => held.set(r.name, r.value));
    grid.addEventListener("change", (event) => {
      const input = event.target;
      if (input.type !== "radio") return;
      const before = held.get(input.name);
      const beforeShared = Array.from(held).some(([name, rank]) => name !== input.name && rank === before);
      if (before !== undefined && !beforeShared) {
        grid.querySelectorAll("input[type=radio]:checked").forEach((other) => {
          if (other === input || other.value !== input.value) return;
          const swap = grid.querySelector(`input[name="${other.name}"][value="${before}"]`);
          swap.checked = true;
          held.set(other.name, before);
        });
      }
      held.set(input.name, input.value);
      refresh(grid);
      formStatus.textContent = "";
    });
    refresh(grid);
  });

  form.addEventListener("submit", (event) => {
    const bad = grids.find((g) => problem(g) !== "");
    if (bad) {
      event.preventDefault();
      formStatus.textContent = `${bad.querySelector(".criterion").textContent}: ${problem(bad)}`;
      const { missing, ties } = state(bad);
      const name = ties.length ? ties[0][0] : missing[0];
      bad.querySelector(`input[name="${name}"]`).focus();
      return;
    }
    form.querySelector("button[type=submit]").disabled = true; // one press, one answer
  });
})();
