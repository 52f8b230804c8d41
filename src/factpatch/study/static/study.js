// Rank grids: one radio group per text and criterion. Giving a text a rank another text holds
// swaps the two, so a ranking stays a permutation; submitting checks that every text has a rank.
// The server checks everything again: this only saves the rater a round trip.
"use strict";
(function () {
  const form = document.querySelector("form.ranking-form");
  if (!form) return;
  form.noValidate = true; // our own message, instead of the browser's bubble on one radio
  const grids = Array.from(form.querySelectorAll("fieldset.rank-grid"));
  const formStatus = form.querySelector(".form-status");

  function groups(grid) {
    return Array.from(new Set(Array.from(grid.querySelectorAll("input[type=radio]"), (r) => r.name)));
  }
  function unranked(grid) {
    return groups(grid).filter((name) => !grid.querySelector(`input[name="${name}"]:checked`));
  }
  function label(name) {
    return "text " + name.slice(name.lastIndexOf("-") + 1);
  }
  function refresh(grid) {
    const missing = unranked(grid);
    grid.classList.toggle("complete", missing.length === 0);
    grid.querySelector(".grid-status").textContent =
      missing.length === 0 ? "\u2713 Every text has a rank." : "Still to rank: " + missing.map(label).join(", ");
  }

  grids.forEach((grid) => {
    const held = new Map(); // group name -> rank it holds now
    grid.querySelectorAll("input[type=radio]:checked").forEach((r) => held.set(r.name, r.value));
    grid.addEventListener("change", (event) => {
      const input = event.target;
      if (input.type !== "radio") return;
      const before = held.get(input.name);
      grid.querySelectorAll("input[type=radio]:checked").forEach((other) => {
        if (other === input || other.value !== input.value) return;
        other.checked = false;
        held.delete(other.name);
        if (before !== undefined) {
          const swap = grid.querySelector(`input[name="${other.name}"][value="${before}"]`);
          if (swap) {
            swap.checked = true;
            held.set(other.name, before);
          }
        }
      });
      held.set(input.name, input.value);
      refresh(grid);
      if (formStatus) formStatus.textContent = "";
    });
    refresh(grid);
  });

  form.addEventListener("submit", (event) => {
    const incomplete = grids.filter((g) => unranked(g).length > 0);
    if (incomplete.length > 0) {
      event.preventDefault();
      const grid = incomplete[0];
      const criterion = grid.querySelector(".criterion").textContent;
      formStatus.textContent = `${criterion}: still to rank ${unranked(grid).map(label).join(", ")}.`;
      grid.querySelector(`input[name="${unranked(grid)[0]}"]`).focus();
      return;
    }
    form.querySelector("button[type=submit]").disabled = true; // one click, one answer
  });
})();
