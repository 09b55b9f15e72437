// The serving page: send an image to /predict, show the overlay and a class legend.
// Plain JavaScript, no framework and no external resources.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const els = {
    form: $("upload-form"),
    file: $("file-input"),
    drop: $("drop-zone"),
    status: $("status"),
    error: $("error"),
    result: $("result"),
    summary: $("summary"),
    input: $("input-image"),
    overlay: $("overlay"),
    legend: $("legend-body"),
    info: $("model-info"),
  };

  // Class id -> {name, color: [r, g, b]}; filled from GET /classes.
  let classInfo = [];
  // Each submission gets a number; answers to an older one are dropped.
  let generation = 0;
  const objectUrls = [];

  // ---- GET /classes ------------------------------------------------------------------------

  // Accepts {"classes": [{"id", "name", "color"}]} as well as {"names": [...], "palette":
  // [[r, g, b], ...]} (and "colors"/"rgb" spellings), so the legend survives small API changes.
  function normalizeClasses(data) {
    const out = [];
    if (!data || typeof data !== "object") return out;
    if (Array.isArray(data.classes)) {
      data.classes.forEach((c, i) => {
        if (c === null || typeof c !== "object") {
          out[i] = { name: c === null ? null : String(c), color: null };
          return;
        }
        const id = Number.isInteger(c.id) ? c.id : i;
        out[id] = { name: c.name ?? null, color: c.color || c.rgb || c.colour || null };
      });
    }
    const names = data.names || data.class_names || data.labels || [];
    const palette = data.palette || data.colors || data.colours || [];
    const n = Math.max(names.length, palette.length);
    for (let i = 0; i < n; i++) {
      out[i] = out[i] || { name: null, color: null };
      if (out[i].name == null && names[i] != null) out[i].name = names[i];
      if (out[i].color == null && palette[i] != null) out[i].color = palette[i];
    }
    return out;
  }

  async function loadClasses() {
    try {
      const resp = await fetch("classes", { headers: { Accept: "application/json" } });
      if (!resp.ok) return;
      const data = await resp.json();
      classInfo = normalizeClasses(data);
      const named = classInfo.filter((c) => c && c.name).length;
      if (classInfo.length) {
        els.info.textContent =
          `The model predicts ${classInfo.length} classes` +
          (named ? "." : " (no class names in the export: shown by id).") +
          " Send it an image; it answers with an overlay and each class's share of the pixels.";
      }
    } catch (err) {
      // The legend falls back to ids and grey swatches; predictions still work.
      console.warn("GET /classes failed", err);
    }
  }

  function className(id) {
    const c = classInfo[id];
    return c && c.name ? String(c.name) : `class ${id}`;
  }

  function classColor(id) {
    const c = classInfo[id];
    const rgb = c && Array.isArray(c.color) && c.color.length >= 3 ? c.color : [128, 128, 128];
    return `rgb(${rgb[0]}, ${rgb[1]}, ${rgb[2]})`;
  }

  // ---- errors ------------------------------------------------------------------------------

  const STATUS_TEXT = {
    400: "The server could not read this image",
    404: "Not found",
    413: "The image is too large",
    415: "Unsupported media type",
    422: "The request was malformed",
    500: "The server failed",
    503: "The server is busy",
    504: "The server did not answer in time",
  };

  // The server's own message: a JSON {"error"|"detail"|"message"} or the plain-text body.
  async function serverMessage(resp) {
    let text = "";
    try {
      text = await resp.text();
    } catch (err) {
      return "";
    }
    try {
      const data = JSON.parse(text);
      const msg = data.error ?? data.detail ?? data.message ?? data.msg;
      if (typeof msg === "string") return msg;
      if (Array.isArray(msg)) return msg.map((m) => (m && m.msg) || JSON.stringify(m)).join("; ");
      if (msg != null) return JSON.stringify(msg);
    } catch (err) {
      // not JSON: fall through to the text
    }
    return text.trim().slice(0, 500);
  }

  class HttpError extends Error {
    constructor(status, message, retryAfter) {
      super(message);
      this.status = status;
      this.retryAfter = retryAfter;
    }
  }

  async function checked(resp) {
    if (resp.ok) return resp;
    const msg = await serverMessage(resp);
    throw new HttpError(resp.status, msg, resp.headers.get("Retry-After"));
  }

  function showError(err) {
    let text;
    if (err instanceof HttpError) {
      const what = STATUS_TEXT[err.status] || "Request failed";
      text = `${what} (HTTP ${err.status})`;
      if (err.message) text += `: ${err.message}`;
      if (err.status === 503 && err.retryAfter) {
        text += ` Try again in ${err.retryAfter} s.`;
      }
    } else {
      text = `Could not reach the server: ${err && err.message ? err.message : err}`;
    }
    els.error.textContent = text;
    els.error.dataset.status = err instanceof HttpError ? String(err.status) : "network";
    els.error.hidden = false;
  }

  function clearError() {
    els.error.hidden = true;
    els.error.textContent = "";
    delete els.error.dataset.status;
  }

  // ---- prediction --------------------------------------------------------------------------

  function setStatus(text, busy) {
    els.status.textContent = text;
    els.form.setAttribute("aria-busy", busy ? "true" : "false");
  }

  function revokeUrls() {
    while (objectUrls.length) URL.revokeObjectURL(objectUrls.pop());
  }

  function imageLoaded(img, url) {
    return new Promise((resolve, reject) => {
      img.onload = () => resolve(img);
      img.onerror = () => reject(new Error("the returned image could not be displayed"));
      img.src = url;
    });
  }

  function renderLegend(json) {
    const classes = (json.classes || []).slice().sort((a, b) => b.pixels - a.pixels);
    const total = json.width * json.height;
    els.legend.replaceChildren();
    for (const c of classes) {
      const share = typeof c.share === "number" ? c.share : c.pixels / total;
      const tr = document.createElement("tr");
      tr.dataset.classId = String(c.id);
      tr.dataset.pixels = String(c.pixels);
      tr.dataset.share = String(share);
      const swatchCell = document.createElement("td");
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.backgroundColor = classColor(c.id);
      swatch.setAttribute("aria-hidden", "true");
      swatchCell.appendChild(swatch);
      const nameCell = document.createElement("td");
      nameCell.className = "class-name";
      nameCell.textContent = c.name ? String(c.name) : className(c.id);
      const pixCell = document.createElement("td");
      pixCell.className = "num";
      pixCell.textContent = c.pixels.toLocaleString("en-US");
      const shareCell = document.createElement("td");
      shareCell.className = "num share";
      shareCell.textContent = `${(share * 100).toFixed(1)}%`;
      tr.append(swatchCell, nameCell, pixCell, shareCell);
      els.legend.appendChild(tr);
    }
  }

  async function segment(blob, label) {
    const mine = ++generation;
    clearError();
    revokeUrls();
    els.result.hidden = true;
    delete els.result.dataset.ready;
    els.legend.replaceChildren();
    els.overlay.removeAttribute("src");
    setStatus(`Segmenting ${label} ...`, true);
    const post = (format) =>
      fetch(`predict?format=${format}`, {
        method: "POST",
        body: blob,
        headers: { "Content-Type": blob.type || "application/octet-stream" },
      }).then(checked);
    try {
      const tic = performance.now();
      const [overlayResp, jsonResp] = await Promise.all([post("overlay"), post("json")]);
      const [overlayBlob, json] = await Promise.all([overlayResp.blob(), jsonResp.json()]);
      if (mine !== generation) return;
      const inputUrl = URL.createObjectURL(blob);
      const overlayUrl = URL.createObjectURL(overlayBlob);
      objectUrls.push(inputUrl, overlayUrl);
      els.input.src = inputUrl;
      renderLegend(json);
      els.result.hidden = false;
      await imageLoaded(els.overlay, overlayUrl);
      if (mine !== generation) return;
      const roundTrip = performance.now() - tic;
      const latency = typeof json.latency_ms === "number" ? `${json.latency_ms.toFixed(1)} ms` : "?";
      els.summary.textContent =
        `${label}: ${json.width} x ${json.height} pixels, ${json.classes.length} classes; ` +
        `server time ${latency}, round trip ${roundTrip.toFixed(0)} ms.`;
      els.result.dataset.ready = "true";
      setStatus("Done.", false);
    } catch (err) {
      if (mine !== generation) return;
      els.result.hidden = true;
      delete els.result.dataset.ready;
      setStatus("", false);
      showError(err);
    }
  }

  function submitFile(file) {
    if (!file) return;
    segment(file, file.name || "image");
  }

  // ---- inputs ------------------------------------------------------------------------------

  els.file.addEventListener("change", () => submitFile(els.file.files[0]));

  for (const type of ["dragenter", "dragover"]) {
    els.drop.addEventListener(type, (ev) => {
      ev.preventDefault();
      els.drop.classList.add("dragover");
    });
  }
  for (const type of ["dragleave", "drop"]) {
    els.drop.addEventListener(type, () => els.drop.classList.remove("dragover"));
  }
  els.drop.addEventListener("drop", (ev) => {
    ev.preventDefault();
    const files = ev.dataTransfer && ev.dataTransfer.files;
    if (files && files.length) submitFile(files[0]);
  });
  // A file dropped next to the zone must not make the browser navigate away from the page.
  window.addEventListener("dragover", (ev) => ev.preventDefault());
  window.addEventListener("drop", (ev) => ev.preventDefault());

  for (const button of document.querySelectorAll("button.sample")) {
    button.addEventListener("click", async () => {
      const src = button.dataset.src;
      const label = button.textContent.trim();
      try {
        const resp = await fetch(src).then(checked);
        segment(await resp.blob(), label);
      } catch (err) {
        showError(err);
      }
    });
  }

  els.form.addEventListener("submit", (ev) => ev.preventDefault());
  loadClasses();
})();
