// The lab page: calls the /v1 routes with the page's CSRF token, draws the causal-trace heatmaps
// as SVG from the trace's JSON, and writes all model text with textContent (never as HTML).
"use strict";

(function () {
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const $ = (id) => document.getElementById(id);
  const SVG = "http://www.w3.org/2000/svg";
  const COLOURS = { hidden: [106, 81, 163], mlp: [35, 139, 69], attn: [203, 24, 29] };
  const TITLES = { hidden: "hidden states", mlp: "MLP outputs", attn: "attention outputs" };
  let lastEdit = null; // the last edit's result: its table is re-read after a revert

  async function call(method, path, body) {
    const options = { method, headers: { "X-CSRF-Token": csrf }, credentials: "same-origin" };
    if (body instanceof FormData) {
      options.body = body;
    } else if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    const response = await fetch(path, options);
    const data = await response.json().catch(() => ({}));
    if (!response.ok) {
      throw new Error((data.error && data.error.message) || `${response.status} ${response.statusText}`);
    }
    return data;
  }

  async function runJob(path, body, bar, status) {
    bar.hidden = false;
    bar.value = 0;
    let job = await call("POST", path, body);
    while (job.state === "queued" || job.state === "running") {
      status.textContent = `${job.message}… ${Math.round(job.progress * 100)} %`;
      bar.value = job.progress;
      await new Promise((resolve) => setTimeout(resolve, 300));
      job = await call("GET", `/v1/jobs/${job.id}`);
    }
    bar.value = 1;
    if (job.state === "failed") throw new Error(job.error);
    return job.result;
  }

  function lines(text) {
    return text.split("\n").map((s) => s.trim()).filter((s) => s);
  }

  function fmt(p) {
    return p < 1e-3 ? p.toExponential(2) : p.toFixed(4);
  }

  function el(tag, attrs, text) {
    const node = tag.startsWith("svg:") ? document.createElementNS(SVG, tag.slice(4)) : document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  // ---- locate: heatmaps ---------------------------------------------------------------------

  function tokenLabel(token) {
    const shown = token.replace(/\n/g, "\\n").replace(/\t/g, "\\t");
    return shown.trim() ? shown : JSON.stringify(token);
  }

  function heatmap(trace, kind) {
    const grid = trace.kinds[kind].scores;
    const window = trace.kinds[kind].window;
    const [start, end] = trace.subject_range;
    const layers = trace.layers;
    const cell = { w: Math.max(6, Math.min(16, Math.floor(330 / layers))), h: 18 };
    const left = 130, top = 24, bottom = 62;
    const width = left + Math.max(cell.w * layers, 250) + 10, height = top + cell.h * grid.length + bottom;
    const values = grid.flat().filter((v) => v !== null);
    const low = Math.min(trace.p_corrupted, ...values);
    const high = Math.max(...values, low + 1e-9);
    const [r, g, b] = COLOURS[kind];
    const svg = el("svg:svg", { width, height, viewBox: `0 0 ${width} ${height}`, class: "heatmap", role: "img",
      "aria-label": `${TITLES[kind]}: P(${trace.target}) with the state restored, by token and layer` });
    svg.dataset.kind = kind;
    svg.appendChild(el("svg:text", { x: left, y: 14, class: "map-title" },
      TITLES[kind] + (window > 1 ? ` (window ${window})` : "")));
    grid.forEach((row, i) => {
      const subject = i >= start && i < end;
      const label = el("svg:text", { x: left - 6, y: top + i * cell.h + cell.h * 0.7, class: subject ? "token subject" : "token",
        "text-anchor": "end" }, tokenLabel(trace.tokens[i]) + (subject ? " *" : ""));
      svg.appendChild(label);
      if (row === null) return;
      row.forEach((v, layer) => {
        const t = (v - low) / (high - low);
        const fill = `rgb(${Math.round(255 - (255 - r) * t)},${Math.round(255 - (255 - g) * t)},${Math.round(255 - (255 - b) * t)})`;
        const rect = el("svg:rect", { x: left + layer * cell.w, y: top + i * cell.h, width: cell.w, height: cell.h,
          fill, class: "cell" });
        rect.dataset.value = String(v);
        rect.dataset.token = String(i);
        rect.dataset.layer = String(layer);
        const description = `${TITLES[kind]} · token ${i} ${JSON.stringify(trace.tokens[i])}${subject ? " (subject)" : ""} · layer ${layer}: P(${trace.target}) = ${v.toFixed(4)}`;
        rect.appendChild(el("svg:title", {}, description));
        rect.addEventListener("mouseenter", () => { $("heat-value").textContent = description; });
        svg.appendChild(rect);
      });
    });
    if (kind === "mlp" || (kind === "hidden" && !trace.kinds.mlp)) {
      const x = left + trace.suggested_layer * cell.w;
      svg.appendChild(el("svg:rect", { x, y: top, width: cell.w, height: cell.h * grid.length, class: "suggested" }));
    }
    const axisY = top + cell.h * grid.length;
    const step = layers > 12 ? 5 : layers > 6 ? 2 : 1;
    for (let layer = 0; layer < layers; layer += step) {
      svg.appendChild(el("svg:text", { x: left + layer * cell.w + cell.w / 2, y: axisY + 13, class: "tick",
        "text-anchor": "middle" }, String(layer)));
    }
    svg.appendChild(el("svg:text", { x: left + (cell.w * layers) / 2, y: axisY + 30, class: "axis", "text-anchor": "middle" },
      "layer" + (window > 1 ? " (window centre)" : "")));
    // the colour scale: from the lowest value (at or below the corrupted run's P) to the highest
    const steps = 20, barWidth = 140, barY = axisY + 38;
    for (let k = 0; k < steps; k++) {
      const t = k / (steps - 1);
      svg.appendChild(el("svg:rect", { x: left + (k * barWidth) / steps, y: barY, width: barWidth / steps + 0.5, height: 8,
        fill: `rgb(${Math.round(255 - (255 - r) * t)},${Math.round(255 - (255 - g) * t)},${Math.round(255 - (255 - b) * t)})` }));
    }
    svg.appendChild(el("svg:text", { x: left - 6, y: barY + 8, class: "tick", "text-anchor": "end" }, fmt(low)));
    svg.appendChild(el("svg:text", { x: left + barWidth + 4, y: barY + 8, class: "tick" }, `${fmt(high)} P(${trace.target})`));
    return svg;
  }

  function showTrace(trace) {
    const maps = $("heatmaps");
    maps.replaceChildren(...Object.keys(trace.kinds).map((kind) => heatmap(trace, kind)));
    const summary = $("trace-summary");
    summary.replaceChildren(
      el("p", {}, `P(${JSON.stringify(trace.target)}) clean ${fmt(trace.p_clean)}, subject corrupted ${fmt(trace.p_corrupted)} ` +
        `(noise ${trace.noise}σ, ${trace.samples} samples; * marks the subject's tokens; ${trace.seconds} s).`),
      el("p", { id: "suggested" }, `Suggested edit layer: ${trace.suggested_layer} (where restoring the MLP output at the last subject token helps most; outlined).`),
    );
    if (!trace.target_is_top) summary.appendChild(el("p", { class: "warning" }, `The model does not predict ${JSON.stringify(trace.target_token)} first here.`));
    const use = $("use-suggested");
    use.hidden = false;
    use.textContent = `Use the traced layer (${trace.suggested_layer})`;
    use.dataset.layer = String(trace.suggested_layer);
  }

  $("trace-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const button = $("trace-run");
    button.disabled = true;
    $("trace-status").textContent = "starting…";
    try {
      const trace = await runJob("/v1/traces", {
        prompt: $("trace-prompt").value, subject: $("trace-subject").value,
        target: $("trace-target").value || null, samples: Number($("trace-samples").value),
      }, $("trace-progress"), $("trace-status"));
      showTrace(trace);
      $("trace-status").textContent = "traced";
    } catch (error) {
      $("trace-status").textContent = "error: " + error.message;
    } finally {
      button.disabled = false;
      $("trace-progress").hidden = true;
    }
  });

  $("use-suggested").addEventListener("click", () => { $("edit-layer").value = $("use-suggested").dataset.layer; });

  // ---- edit: before / after / now ---------------------------------------------------------------

  function probabilityCell(value) {
    const td = el("td", { class: "num" }, value === undefined ? "" : fmt(value));
    if (value !== undefined) td.dataset.p = String(value);
    return td;
  }

  function showEdit(result, now) {
    const table = $("probabilities");
    const newT = result.target_new, trueT = result.target_true;
    table.querySelector("thead tr").replaceChildren(
      el("th", {}, "kind"), el("th", {}, "text"),
      el("th", { class: "num" }, `P(${newT}) before`), el("th", { class: "num" }, "after"),
      el("th", { class: "num" }, `P(${trueT}) before`), el("th", { class: "num" }, "after"),
      el("th", { class: "num" }, `P(${newT}) now`), el("th", { class: "num" }, `P(${trueT}) now`),
    );
    table.tBodies[0].replaceChildren(...result.rows.map((row) => {
      const tr = el("tr", { "data-group": row.group });
      const current = now ? now[row.text] : undefined;
      tr.append(el("td", {}, row.group), el("td", { class: "text" }, row.text),
        probabilityCell(row.before[newT]), probabilityCell(row.after[newT]),
        probabilityCell(row.before[trueT]), probabilityCell(row.after[trueT]),
        probabilityCell(current && current[newT]), probabilityCell(current && current[trueT]));
      tr.children[6].classList.add("now-new");
      tr.children[7].classList.add("now-true");
      tr.children[2].classList.add("before-new");
      tr.children[3].classList.add("after-new");
      return tr;
    }));
    table.hidden = false;
    $("reread").hidden = false;
  }

  async function reread() {
    if (!lastEdit) return;
    const texts = [...new Set(lastEdit.rows.map((row) => row.text))];
    const now = await call("POST", "/v1/probabilities", { texts, targets: [lastEdit.target_new, lastEdit.target_true] });
    showEdit(lastEdit, now.probabilities);
    $("edit-status").textContent = `probabilities re-read with stack ${now.stack.patches.length ? now.stack.patches.join(", ") : "empty (original weights)"}`;
  }

  $("reread").addEventListener("click", () => reread().catch((e) => { $("edit-status").textContent = "error: " + e.message; }));

  $("edit-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const button = $("edit-run");
    button.disabled = true;
    $("edit-status").textContent = "starting…";
    try {
      const layer = $("edit-layer").value;
      const result = await runJob("/v1/edits", {
        prompt: $("edit-prompt").value, subject: $("edit-subject").value, target_new: $("edit-target").value,
        method: $("edit-method").value, layer: layer === "" ? null : Number(layer),
        probes: lines($("edit-probes").value), neighbours: lines($("edit-neighbours").value),
      }, $("edit-progress"), $("edit-status"));
      lastEdit = result;
      showEdit(result, null);
      await refreshPatches();  // the table lists the patch before the status says it is applied
      $("edit-status").textContent = `patch ${result.patch} applied (${result.method}, layer ${result.layers.join("–")}, ${result.edit_seconds} s)`;
    } catch (error) {
      $("edit-status").textContent = "error: " + error.message;
    } finally {
      button.disabled = false;
      $("edit-progress").hidden = true;
    }
  });

  // ---- compare ------------------------------------------------------------------------------

  $("compare-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    $("compare-status").textContent = "generating…";
    try {
      const result = await call("POST", "/v1/compare", {
        prompt: $("compare-prompt").value, max_tokens: Number($("compare-tokens").value),
        temperature: Number($("compare-temperature").value), seed: Number($("compare-seed").value),
      });
      $("with-patches").textContent = result.prompt + result.with_patches;
      $("without-patches").textContent = result.prompt + result.without_patches;
      const n = result.stack.patches.length;
      $("compare-status").textContent = `seed ${result.seed}, temperature ${result.temperature}; ${n} patch${n === 1 ? "" : "es"} applied`;
    } catch (error) {
      $("compare-status").textContent = "error: " + error.message;
    }
  });

  // ---- patches ------------------------------------------------------------------------------

  function requestText(p) {
    if (p.requests.length !== 1) return `${p.requests.length} edits`;
    const r = p.requests[0];
    return `${r.prompt.replace("{}", r.subject)} → ${r.target_new}`;
  }

  async function refreshPatches() {
    const listing = await call("GET", "/v1/patches");
    const rows = listing.data.map((p) => {
      const tr = el("tr", { "data-id": p.id });
      const revert = el("button", { type: "button", class: "revert" }, "Revert");
      revert.addEventListener("click", () => mutate("DELETE", `/v1/patches/${p.id}`, `reverted ${p.id}`));
      const download = el("a", { href: `/v1/patches/${p.id}/file`, download: `${p.id}.safetensors` }, "Download");
      const actions = el("td", {});
      actions.append(revert, " ", download);
      tr.append(el("td", { class: "mono" }, p.id), el("td", {}, requestText(p)), el("td", {}, p.method || "?"),
        el("td", {}, p.layers.join("–")), el("td", {}, p.applied_at.replace("T", " ").replace("Z", "")), actions);
      return tr;
    });
    $("patch-table").tBodies[0].replaceChildren(...rows);
    if (!rows.length) {
      $("patch-table").tBodies[0].appendChild(el("tr", {}, "")).appendChild(el("td", { colspan: "6", class: "empty" }, "No patches applied: the original weights."));
    }
    $("stack-label").textContent = `stack version ${listing.stack.version}: ${listing.data.length} patch${listing.data.length === 1 ? "" : "es"}`;
  }

  async function mutate(method, path, done) {
    try {
      await call(method, path);
      await refreshPatches();
      $("upload-status").textContent = done;
      if (lastEdit) await reread();
    } catch (error) {
      $("upload-status").textContent = "error: " + error.message;
    }
  }

  $("revert-all").addEventListener("click", () => mutate("DELETE", "/v1/patches", "reverted all patches"));

  $("upload-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const status = $("upload-status");
    status.classList.remove("error");
    try {
      const result = await call("POST", "/v1/patches", new FormData($("upload-form")));
      await refreshPatches();
      status.textContent = `applied ${result.description}`;
    } catch (error) {
      status.textContent = "refused: " + error.message;
      status.classList.add("error");
    }
  });

  refreshPatches().catch((e) => { $("stack-label").textContent = "error: " + e.message; });
})();
