// encoderlens dashboard: a static page over the data files written by encoderlens.report.dashboard.
// Data arrive as <script> files calling encoderlens.register*(), because browsers block fetch() of
// local files under file://. Binary arrays are base85 text (RFC 1924 alphabet, Python's b85encode).
"use strict";

const encoderlens = (() => {
  const state = {
    index: null, images: {}, features: {}, loading: {},
    dataset: 0, image: null, selection: {}, feature: {}, timings: [], renders: 0,
  };

  // ---- decoding -------------------------------------------------------------------------------
  const ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz!#$%&()*+-;<=>?@^_`{|}~";
  const DIGIT = new Int16Array(128).fill(-1);
  for (let i = 0; i < ALPHABET.length; i++) DIGIT[ALPHABET.charCodeAt(i)] = i;
  const MISSING = 65535;
  const SCORE_SCALE = 10000;

  function b85decode(text) {
    const out = new Uint8Array((text.length / 5) * 4);
    for (let i = 0, o = 0; i < text.length; i += 5, o += 4) {
      let value = 0;
      for (let j = 0; j < 5; j++) value = value * 85 + DIGIT[text.charCodeAt(i + j)];
      out[o] = value >>> 24; out[o + 1] = (value >>> 16) & 255;
      out[o + 2] = (value >>> 8) & 255; out[o + 3] = value & 255;
    }
    return out;
  }

  // scores are fixed-point with exactly the 4 decimals Python's format(value, ".4f") prints
  function formatScore(code) {
    if (code === MISSING || code === undefined) return "n/a";
    const fraction = String(code % SCORE_SCALE).padStart(4, "0");
    return `${Math.floor(code / SCORE_SCALE)}.${fraction}`;
  }

  function decodeEntry(entry) {
    if (entry.decoded) return entry.decoded;
    const [gh, gw] = entry.grid;
    const slots = entry.n;
    const stored = entry.derived.filter((d) => !d).length;
    const codes = b85decode(entry.maps).subarray(0, stored * gh * gw);
    const rangeView = new DataView(b85decode(entry.ranges).buffer);
    const scoreView = new DataView(b85decode(entry.scores).buffer);
    const perSlot = currentDataset().thresholds.length + 2;  // IoU per threshold, coverage, pointing
    const storedIndex = [];
    let next = 0;
    for (let s = 0; s < slots; s++) storedIndex.push(entry.derived[s] ? -1 : next++);
    entry.decoded = {
      gh, gw, codes, storedIndex,
      lo: (k) => rangeView.getFloat32(8 * k, true),
      hi: (k) => rangeView.getFloat32(8 * k + 4, true),
      score: (slot, column) => scoreView.getUint16(2 * (slot * perSlot + column), true),
    };
    return entry.decoded;
  }

  // (layer, head) of every slot; a head mean is not stored: head -1 in a layer with numbered heads
  function labelSlots(entry) {
    const labels = new Int8Array(b85decode(entry.slots).buffer);
    entry.layer = Array.from(labels.subarray(0, 2 * entry.n).filter((v, k) => k % 2 === 0));
    entry.head = Array.from(labels.subarray(0, 2 * entry.n).filter((v, k) => k % 2 === 1));
    entry.derived = entry.head.map((h, s) => h < 0 &&
      entry.head.some((g, t) => g >= 0 && entry.layer[t] === entry.layer[s]));
  }

  // The map of one slot on its patch grid (Float32Array), or null if it cannot be scored. A derived
  // slot is the mean over the numbered heads of its layer, as the analysis computes it.
  function slotMap(entry, slot) {
    const d = decodeEntry(entry);
    const cells = d.gh * d.gw;
    const k = d.storedIndex[slot];
    if (k >= 0) {
      const lo = d.lo(k), hi = d.hi(k);
      if (!Number.isFinite(lo) || !Number.isFinite(hi)) return null;
      const map = new Float32Array(cells), step = (hi - lo) / 255;
      for (let i = 0; i < cells; i++) map[i] = lo + d.codes[k * cells + i] * step;
      return map;
    }
    const heads = [];
    for (let s = 0; s < entry.layer.length; s++) {
      if (entry.layer[s] === entry.layer[slot] && entry.head[s] >= 0) heads.push(s);
    }
    const mean = new Float32Array(cells);
    for (const s of heads) {
      const map = slotMap(entry, s);
      if (!map) return null;
      for (let i = 0; i < cells; i++) mean[i] += map[i] / heads.length;
    }
    return mean;
  }

  // ---- bilinear upsampling, PyTorch's align_corners=False rule (as alignment/resize.py) -----------
  const weightCache = {};
  function bilinearWeights(sizeIn, sizeOut) {
    const key = `${sizeIn}:${sizeOut}`;
    if (weightCache[key]) return weightCache[key];
    const lower = new Int32Array(sizeOut), upper = new Int32Array(sizeOut);
    const fraction = new Float32Array(sizeOut);
    for (let i = 0; i < sizeOut; i++) {
      const source = Math.max((i + 0.5) * (sizeIn / sizeOut) - 0.5, 0);
      lower[i] = Math.min(Math.floor(source), sizeIn - 1);
      upper[i] = Math.min(lower[i] + 1, sizeIn - 1);
      fraction[i] = source - lower[i];
    }
    return (weightCache[key] = { lower, upper, fraction });
  }

  function upsample(map, gh, gw, size) {
    const cols = bilinearWeights(gw, size), rows = bilinearWeights(gh, size);
    const wide = new Float32Array(gh * size);
    for (let r = 0; r < gh; r++) {
      for (let x = 0; x < size; x++) {
        const f = cols.fraction[x];
        wide[r * size + x] = (1 - f) * map[r * gw + cols.lower[x]] + f * map[r * gw + cols.upper[x]];
      }
    }
    const out = new Float32Array(size * size);
    for (let y = 0; y < size; y++) {
      const f = rows.fraction[y], a = rows.lower[y] * size, b = rows.upper[y] * size;
      for (let x = 0; x < size; x++) out[y * size + x] = (1 - f) * wide[a + x] + f * wide[b + x];
    }
    return out;
  }

  // The top pixels holding p% of the map's mass (alignment/thresholds.py); pixels tied at the cut
  // are all drawn, where the analysis shares the remaining places among them. The cut value is found
  // without a full sort: a mass histogram locates the bin where the running mass from the top crosses
  // p%, and only that bin's values are sorted.
  const BINS = 4096;
  function massRegion(values, percent) {
    let total = 0, lo = Infinity, hi = -Infinity;
    for (let i = 0; i < values.length; i++) {
      const v = values[i];
      total += v;
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
    const region = new Uint8Array(values.length);
    if (!(total > 0)) return region;
    const target = (percent / 100 - 1e-9) * total;
    const scale = hi > lo ? (BINS - 1) / (hi - lo) : 0;
    const mass = new Float64Array(BINS);
    for (let i = 0; i < values.length; i++) mass[Math.floor((values[i] - lo) * scale)] += values[i];
    let above = 0, bin = BINS - 1;
    while (bin > 0 && above + mass[bin] < target) above += mass[bin--];
    const inBin = [];
    for (let i = 0; i < values.length; i++) {
      if (Math.floor((values[i] - lo) * scale) === bin) inBin.push(values[i]);
    }
    inBin.sort((a, b) => b - a);
    let cut = inBin[inBin.length - 1];
    for (const v of inBin) {
      above += v;
      if (above >= target) { cut = v; break; }
    }
    for (let i = 0; i < values.length; i++) region[i] = values[i] >= cut ? 1 : 0;
    return region;
  }

  // viridis, polynomial fit (perceptually uniform, readable in grayscale)
  const VIRIDIS = [
    [0.2777273272234177, 0.005407344544966578, 0.3340998053353061],
    [0.1050930431085774, 1.404613529898575, 1.384590162594685],
    [-0.3308618287255563, 0.214847559468213, 0.09509516302823659],
    [-4.634230498983486, -5.799100973351585, -19.33244095627987],
    [6.228269936347081, 14.17993336680509, 56.69055260068105],
    [4.776384997670288, -13.74514537774601, -65.35303263337234],
    [-5.435455855934631, 4.645852612178535, 26.3124352495832],
  ];
  const LUT = new Uint8Array(256 * 3);
  for (let i = 0; i < 256; i++) {
    const t = i / 255;
    for (let c = 0; c < 3; c++) {
      let v = 0;
      for (let p = VIRIDIS.length - 1; p >= 0; p--) v = v * t + VIRIDIS[p][c];
      LUT[i * 3 + c] = Math.round(255 * Math.min(1, Math.max(0, v)));
    }
  }
  const LUT32 = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    LUT32[i] = ((255 << 24) | (LUT[i * 3 + 2] << 16) | (LUT[i * 3 + 1] << 8) | LUT[i * 3]) >>> 0;
  }
  function colour(t) {
    const i = Math.round(255 * Math.min(1, Math.max(0, t)));
    return `rgb(${LUT[i * 3]},${LUT[i * 3 + 1]},${LUT[i * 3 + 2]})`;
  }
  const PALETTE = ["#e41a1c", "#377eb8", "#4daf4a", "#984ea3", "#ff7f00", "#ffff33", "#a65628",
                   "#f781bf", "#999999", "#66c2a5", "#fc8d62", "#8da0cb"];

  // ---- small DOM helpers ------------------------------------------------------------------------
  const $ = (selector, root = document) => root.querySelector(selector);
  function element(tag, attributes = {}, children = []) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attributes)) {
      if (key === "text") node.textContent = value;
      else if (key === "class") node.className = value;
      else node.setAttribute(key, value);
    }
    for (const child of children) node.append(child);
    return node;
  }
  function select(name, options, value, onChange) {
    const node = element("select", { name, id: `select-${name}` });
    for (const [optionValue, label] of options) {
      node.append(element("option", { value: String(optionValue), text: label }));
    }
    if (options.some(([v]) => String(v) === String(value))) node.value = String(value);
    node.addEventListener("change", () => onChange(node.value, name));
    return element("label", {}, [name, node]);
  }
  function showError(message) {
    const node = $("#error");
    node.textContent = message;
    node.hidden = false;
  }
  function loadScript(src) {
    if (!state.loading[src]) {
      state.loading[src] = new Promise((resolve, reject) => {
        const script = element("script", { src });
        script.onload = resolve;
        script.onerror = () => reject(new Error(`cannot load ${src}`));
        document.head.append(script);
      });
    }
    return state.loading[src];
  }

  // tables travel as columns; strings as {levels, codes}
  function rowsOf(table) {
    const names = Object.keys(table.columns);
    const values = names.map((n) => {
      const column = table.columns[n];
      return Array.isArray(column) ? column : column.codes.map((c) => column.levels[c]);
    });
    const rows = [];
    for (let i = 0; i < table.n; i++) {
      const row = {};
      names.forEach((n, j) => { row[n] = values[j][i]; });
      rows.push(row);
    }
    return rows;
  }
  function number(value, digits = 4) {
    if (value === null || value === undefined) return "n/a";
    if (typeof value !== "number") return String(value);
    if (Number.isInteger(value)) return String(value);
    return Math.abs(value) >= 1000 ? value.toFixed(1) : value.toFixed(digits);
  }
  function htmlTable(rows, columns, className = "") {
    const table = element("table", { class: className });
    table.append(element("tr", {}, columns.map((c) => element("th", { text: c }))));
    for (const row of rows) {
      table.append(element("tr", {}, columns.map((c) => element("td", {
        text: number(row[c]), class: typeof row[c] === "string" ? "text" : "" }))));
    }
    return table;
  }

  // ---- navigation -------------------------------------------------------------------------------
  function showPage(page) {
    document.querySelectorAll(".page").forEach((p) => p.classList.toggle("active", p.id === `page-${page}`));
    document.querySelectorAll("#tabs a").forEach((a) => a.classList.toggle("active", a.dataset.page === page));
  }
  function route() {
    const [page, datasetIndex, imageIndex] = (location.hash.slice(1) || "gallery").split("/");
    if (page === "image" && imageIndex !== undefined) {
      openImage(Number(datasetIndex), Number(imageIndex));
    } else if (page === "image" && state.image === null && currentDataset()?.images.length) {
      openImage(state.dataset, 0);
    }
    if (page === "features") renderFeatures();
    showPage(page);
  }
  const currentDataset = () => state.index.datasets[state.dataset];

  // ---- gallery ----------------------------------------------------------------------------------
  function renderGallery() {
    const page = $("#page-gallery");
    page.replaceChildren();
    if (!state.index.datasets.length) {
      page.append(element("p", { text: "No annotated dataset in this configuration." }));
    }
    state.index.datasets.forEach((dataset, d) => {
      page.append(element("h2", { text: `${dataset.name}: ${dataset.images.length} annotated images` }));
      const grid = element("div", { class: "gallery" });
      dataset.images.forEach((image, i) => {
        grid.append(element("a", { href: `#image/${d}/${i}` }, [
          element("img", { src: image.thumb, loading: "lazy", alt: image.id }),
          `${image.id} (${image.boxes.length} boxes)`]));
      });
      page.append(grid);
    });
  }

  // ---- one image --------------------------------------------------------------------------------
  async function openImage(d, i) {
    const dataset = state.index.datasets[d];
    const image = dataset && dataset.images[i];
    if (!image) { showError(`no image ${d}/${i}`); return; }
    state.dataset = d;
    state.image = i;
    const key = `${dataset.name}/${image.id}`;
    const page = $("#page-image");
    page.dataset.ready = "0";
    if (!state.images[key]) {
      page.replaceChildren(element("p", { text: `loading ${image.id} ...` }));
      await loadScript(image.data);
    }
    if (!state.images[key]) { showError(`${image.data} did not register ${key}`); return; }
    if (!image.element) {
      image.element = new Image();
      image.element.src = image.image;
      await image.element.decode().catch(() => showError(`cannot load ${image.image}`));
    }
    renderImagePage();
  }

  function entriesOf(model, variant) {
    const payload = state.images[`${currentDataset().name}/${currentDataset().images[state.image].id}`];
    return payload.entries.filter((e) => e.model === model && (variant === undefined || e.variant === variant));
  }

  // selections that no longer exist fall back to: first method, last layer, head mean
  function settleSelection() {
    const dataset = currentDataset();
    const s = state.selection;
    if (!dataset.models.some((m) => m.name === s.model)) s.model = dataset.models[0].name;
    const model = dataset.models.find((m) => m.name === s.model);
    if (s.variant !== "all" && !model.variants.includes(s.variant)) s.variant = "all";
    if (!dataset.thresholds.includes(s.threshold)) {
      s.threshold = dataset.thresholds.includes(30) ? 30 : dataset.thresholds[0];
    }
    const entries = entriesOf(s.model);
    if (!entries.length) return { model, entry: null, methods: [], layers: [], heads: [] };
    const methods = [...new Set(entries.map((e) => e.method))];
    if (!methods.includes(s.method)) s.method = methods[0];
    const entry = entries.find((e) => e.method === s.method);
    const layers = [...new Set(entry.layer)];
    if (!layers.includes(s.layer)) s.layer = Math.max(...layers);
    const heads = entry.head.filter((h, k) => entry.layer[k] === s.layer);
    if (!heads.includes(s.head)) s.head = heads.includes(-1) ? -1 : heads[0];
    return { model, entry, methods, layers, heads };
  }

  function renderImagePage() {
    const dataset = currentDataset();
    const image = dataset.images[state.image];
    const s = state.selection;
    const { model, entry, methods, layers, heads } = settleSelection();
    const hasHeads = entry !== null && entry.head.some((h) => h >= 0);
    const changed = (value, name) => {
      const t0 = performance.now();
      s[name] = ["layer", "head", "threshold"].includes(name) ? Number(value) : value;
      renderImagePage();
      const drawn = performance.now();
      // the frame that shows the new canvas: the next animation frame, then the task after it
      requestAnimationFrame(() => setTimeout(() => {
        state.timings.push({ control: name, draw_ms: drawn - t0, frame_ms: performance.now() - t0 });
      }, 0));
    };
    const page = $("#page-image");
    page.dataset.ready = "0";
    const nav = element("p", {}, [
      element("a", { href: `#image/${state.dataset}/${Math.max(0, state.image - 1)}`, text: "◀ previous" }), " ",
      element("a", { href: "#gallery", text: "gallery" }), " ",
      element("a", { href: `#image/${state.dataset}/${Math.min(dataset.images.length - 1, state.image + 1)}`,
                     text: "next ▶" }),
    ]);
    const controls = element("div", { class: "controls" }, [
      select("model", dataset.models.map((m) => [m.name, m.name]), s.model, changed),
      select("variant", [["all", "all (side by side)"], ...model.variants.map((v) => [v, v])], s.variant, changed),
      select("method", methods.map((m) => [m, m]), s.method, changed),
      select("layer", layers.map((l) => [l, l < 0 ? "—" : String(l)]), s.layer, changed),
      select("head", heads.map((h) => [h, h >= 0 ? String(h) : hasHeads ? "mean" : "—"]), s.head, changed),
      select("threshold", dataset.thresholds.map((t) => [t, `${t}%`]), s.threshold, changed),
    ]);
    const variants = s.variant === "all" ? model.variants : [s.variant];
    const panels = element("div", { class: "panels" });
    if (entry === null) {
      panels.append(element("p", { text: `${s.model} has no scored map of this image (see its alignment log)` }));
    } else {
      for (const variant of variants) panels.append(imagePanel(image, variant, s));
    }
    const legend = element("p", { class: "legend" }, dataset.features
      .filter((f, k) => image.boxes.some((b) => b[0] === k))
      .map((f) => element("span", {}, [element("i", { style: `background:${PALETTE[dataset.features.indexOf(f) % PALETTE.length]}` }), f])));
    page.replaceChildren(
      element("h2", { text: `${image.id} (${dataset.name})` }), nav, controls, panels, legend,
      baselineTable(image, s.threshold),
      element("p", { class: "note", text:
        "Heatmap: the stored map (8-bit per map), upsampled bilinearly to the analysis resolution as " +
        "the analysis does, colour-scaled to the map's own range (viridis). White outline: the top " +
        "pixels holding the threshold's share of the mass. Boxes: expert annotations. Scores are " +
        "read from alignment.parquet (4 decimals), not recomputed." }));
    page.dataset.ready = "1";
    state.renders += 1;
  }

  function imagePanel(image, variant, s) {
    const dataset = currentDataset();
    const entry = entriesOf(s.model, variant).find((e) => e.method === s.method);
    const panel = element("div", { class: "panel", "data-variant": variant });
    panel.append(element("h3", { text: `${s.model} · ${variant}` }));
    const canvas = element("canvas");
    // small images are scaled up too, so the analysis pixels stay visible
    const scale = 448 / Math.max(image.element.naturalWidth, image.element.naturalHeight);
    canvas.width = Math.round(image.element.naturalWidth * scale);
    canvas.height = Math.round(image.element.naturalHeight * scale);
    panel.append(canvas);
    let slot = -1;
    if (entry) {
      slot = entry.layer.findIndex((l, k) => l === s.layer && entry.head[k] === s.head);
    }
    const k = dataset.thresholds.indexOf(s.threshold);
    const score = (column) => (slot >= 0 ? decodeEntry(entry).score(slot, column) : MISSING);
    const n = dataset.thresholds.length;
    panel.append(element("table", { class: "scores" }, [
      element("tr", {}, [element("th", { class: "text", text: `IoU @ ${s.threshold}%` }),
                         element("td", { class: "iou", text: formatScore(score(k)) })]),
      element("tr", {}, [element("th", { class: "text", text: "coverage" }),
                         element("td", { class: "coverage", text: formatScore(score(n)) })]),
      element("tr", {}, [element("th", { class: "text", text: "pointing hit" }),
                         element("td", { class: "pointing", text: formatScore(score(n + 1)) })]),
    ]));
    drawOverlay(canvas, image, entry, slot, s.threshold);
    return panel;
  }

  // The upsampled map of a slot, its sorted values and its colour layer, kept for the entry's last
  // slot: a threshold change then only redraws the region outline.
  function preparedMap(entry, slot) {
    if (entry.prepared && entry.prepared.slot === slot) return entry.prepared;
    const map = slot >= 0 ? slotMap(entry, slot) : null;
    if (!map) return (entry.prepared = { slot, values: null });
    const size = entry.size;
    const values = upsample(map, entry.grid[0], entry.grid[1], size);
    let lo = Infinity, hi = -Infinity;
    for (const v of values) { if (v < lo) lo = v; if (v > hi) hi = v; }
    const heat = new ImageData(size, size);
    // one 32-bit write per pixel (RGBA bytes in memory order: little-endian ABGR words)
    const heatPixels = new Uint32Array(heat.data.buffer);
    const levels = 255 / (hi > lo ? hi - lo : 1);
    for (let i = 0; i < values.length; i++) heatPixels[i] = LUT32[Math.round((values[i] - lo) * levels)];
    return (entry.prepared = { slot, values, heat: toCanvas(heat) });
  }

  function drawOverlay(canvas, image, entry, slot, threshold) {
    const ctx = canvas.getContext("2d");
    const W = canvas.width, H = canvas.height;
    ctx.drawImage(image.element, 0, 0, W, H);
    const prepared = entry ? preparedMap(entry, slot) : { values: null };
    if (prepared.values) {
      const size = entry.size;
      const region = massRegion(prepared.values, threshold);
      const outline = new ImageData(size, size);
      const outlinePixels = new Uint32Array(outline.data.buffer);
      for (let y = 0; y < size; y++) {
        for (let x = 0; x < size; x++) {
          const i = y * size + x;
          if (region[i] && (x === 0 || y === 0 || x === size - 1 || y === size - 1 ||
              !region[i - 1] || !region[i + 1] || !region[i - size] || !region[i + size])) {
            outlinePixels[i] = 0xffffffff;
          }
        }
      }
      ctx.imageSmoothingEnabled = false;
      ctx.globalAlpha = 0.55;
      ctx.drawImage(prepared.heat, 0, 0, W, H);
      ctx.globalAlpha = 1;
      ctx.drawImage(toCanvas(outline), 0, 0, W, H);
    } else {
      ctx.fillStyle = "rgba(0,0,0,0.5)";
      ctx.fillRect(0, 0, W, 24);
      ctx.fillStyle = "#fff";
      ctx.fillText(entry ? "map not scorable (NaN or no mass)" : "no map for this selection", 6, 16);
    }
    const features = currentDataset().features;
    ctx.lineWidth = 2;
    ctx.font = "11px sans-serif";
    for (const [f, left, top, width, height] of image.boxes) {
      ctx.strokeStyle = ctx.fillStyle = PALETTE[f % PALETTE.length];
      ctx.strokeRect(left * W, top * H, width * W, height * H);
      ctx.fillText(features[f], left * W + 2, top * H + 11);
    }
  }

  function toCanvas(imageData) {
    const c = document.createElement("canvas");
    c.width = imageData.width; c.height = imageData.height;
    c.getContext("2d").putImageData(imageData, 0, 0);
    return c;
  }

  function baselineTable(image, threshold) {
    const dataset = currentDataset();
    const payload = state.images[`${dataset.name}/${image.id}`];
    const k = dataset.thresholds.indexOf(threshold), n = dataset.thresholds.length;
    const rows = payload.baselines.map((b) => ({
      baseline: b.method, [`IoU @ ${threshold}%`]: formatScore(b.scores[k]),
      coverage: formatScore(b.scores[n]), "pointing hit": formatScore(b.scores[n + 1]) }));
    const wrap = element("div", {}, [element("h3", { text: "Baselines on this image" })]);
    wrap.append(htmlTable(rows, ["baseline", `IoU @ ${threshold}%`, "coverage", "pointing hit"], "baselines"));
    return wrap;
  }

  // ---- leaderboard ------------------------------------------------------------------------------
  const board = { metric: "iou", layer: "last" };
  function renderLeaderboard() {
    const page = $("#page-leaderboard");
    page.replaceChildren();
    if (!state.index.datasets.length) {
      page.append(element("p", { text: "No annotated dataset in this configuration." }));
      return;
    }
    const dataset = currentDataset();
    if (!dataset.thresholds.includes(board.threshold)) {
      board.threshold = dataset.thresholds.includes(30) ? 30 : dataset.thresholds[0];
    }
    const rows = (dataset.leaderboardRows ||= rowsOf(dataset.leaderboard.table));
    const redraw = (value, name) => {
      if (name === "dataset") state.dataset = Number(value);
      else board[name] = name === "threshold" ? Number(value) : value;
      renderLeaderboard();
    };
    page.append(element("h2", { text: `Model leaderboard: ${dataset.name}` }));
    page.append(element("div", { class: "controls" }, [
      select("dataset", state.index.datasets.map((d, i) => [i, d.name]), state.dataset, redraw),
      select("metric", [["iou", "IoU"], ["coverage", "coverage"], ["pointing_hit", "pointing game"]],
             board.metric, redraw),
      select("threshold", dataset.thresholds.map((t) => [t, `${t}%`]), board.threshold, redraw),
      select("layer", [["last", "last scored layer"], ["best", "best layer (optimistic)"]], board.layer, redraw),
    ]));
    const best = new Map();
    for (const row of rows) {
      // coverage and pointing do not depend on the threshold: a summary may list them without one
      const atThreshold = row.threshold === board.threshold || (row.threshold === null && board.metric !== "iou");
      if (row.metric !== board.metric || !atThreshold) continue;
      const key = `${row.model}|${row.variant}|${row.method}`;
      const current = best.get(key);
      const better = !current || (board.layer === "last" ? row.layer > current.layer
                                                         : (row.mean ?? -1) > (current.mean ?? -1));
      if (better) best.set(key, row);
    }
    const ranked = [...best.values()].sort((a, b) => (b.mean ?? -1) - (a.mean ?? -1));
    const table = element("table", { class: "leaderboard" });
    table.append(element("tr", {}, ["#", "model", "variant", "method", "layer", "mean", "95% CI", "n",
                                    "dropped", ""].map((c) => element("th", { text: c }))));
    ranked.forEach((row, i) => {
      const ci = row.ci_low === null ? "—" : `[${number(row.ci_low)}, ${number(row.ci_high)}]`;
      table.append(element("tr", {}, [
        element("td", { text: String(i + 1) }), element("td", { class: "text", text: row.model }),
        element("td", { class: "text", text: row.variant || "—" }), element("td", { class: "text", text: row.method }),
        element("td", { text: row.layer < 0 ? "—" : String(row.layer) }),
        element("td", { class: "mean", text: number(row.mean) }), element("td", { text: ci }),
        element("td", { text: String(row.n) }), element("td", { text: String(row.n_dropped) }),
        element("td", { class: "text" }, [element("span", { class: "bar",
          style: `width:${Math.round(200 * Math.max(0, row.mean ?? 0))}px` })]),
      ]));
    });
    page.append(table, element("p", { class: "note", text: dataset.leaderboard.source === "statistics"
      ? "Means over images with seeded percentile-bootstrap 95% CIs from the statistics stage " +
        "(alignment_summary.parquet). Whole maps only: the head mean for per-head methods."
      : "Means over scorable images computed from alignment.parquet (the statistics stage did not " +
        "run, so no confidence intervals). Whole maps only: the head mean for per-head methods." }));
  }

  // ---- per-feature breakdown and head x feature heatmap ------------------------------------------
  async function renderFeatures() {
    const page = $("#page-features");
    if (!state.index.datasets.length) {
      page.replaceChildren(element("p", { text: "No annotated dataset in this configuration." }));
      return;
    }
    const dataset = currentDataset();
    const f = state.feature;
    const models = [...dataset.models.map((m) => m.name), "baseline"];
    if (!models.includes(f.model)) f.model = models[0];
    const key = `${dataset.name}/${f.model}`;
    if (!state.features[key]) {
      page.replaceChildren(element("p", { text: `loading ${f.model} ...` }));
      await loadScript(`data/${dataset.name}/features/${f.model}.js`);
    }
    const rows = (state.features[key].rows ||= rowsOf(state.features[key].table));
    const pick = (name, values, fallback) => {
      if (!values.includes(f[name])) f[name] = fallback(values);
      return values;
    };
    const unique = (field, filter) => [...new Set(rows.filter(filter).map((r) => r[field]))];
    const variants = pick("variant", unique("variant", () => true), (v) => v[0]);
    const methods = pick("method", unique("method", (r) => r.variant === f.variant), (v) => v[0]);
    const layers = pick("layer", unique("layer", (r) => r.variant === f.variant && r.method === f.method),
                        (v) => Math.max(...v));
    const heads = pick("head", unique("head", (r) => r.variant === f.variant && r.method === f.method &&
                       r.layer === f.layer), (v) => (v.includes(-1) ? -1 : v[0]));
    pick("threshold", dataset.thresholds, (v) => (v.includes(30) ? 30 : v[0]));
    const redraw = (value, name) => {
      f[name] = ["layer", "head", "threshold"].includes(name) ? Number(value) : value;
      renderFeatures();
    };
    const hasHeads = heads.some((h) => h >= 0);
    const controls = element("div", { class: "controls" }, [
      select("model", models.map((m) => [m, m]), f.model, redraw),
      select("variant", variants.map((v) => [v, v || "—"]), f.variant, redraw),
      select("method", methods.map((m) => [m, m]), f.method, redraw),
      select("layer", layers.sort((a, b) => a - b).map((l) => [l, l < 0 ? "—" : String(l)]), f.layer, redraw),
      select("head", heads.sort((a, b) => a - b).map((h) => [h, h >= 0 ? String(h) : hasHeads ? "mean" : "—"]),
             f.head, redraw),
      select("threshold", dataset.thresholds.map((t) => [t, `${t}%`]), f.threshold, redraw),
    ]);
    const atSlot = rows.filter((r) => r.variant === f.variant && r.method === f.method && r.layer === f.layer &&
                               r.threshold === f.threshold);
    const breakdown = atSlot.filter((r) => r.head === f.head)
      .map((r) => ({ feature: r.feature, "mean IoU": r.iou, "mean coverage": r.coverage,
                     "pointing rate": r.pointing_hit, "n images": r.n }))
      .sort((a, b) => (b["mean IoU"] ?? -1) - (a["mean IoU"] ?? -1));
    const heat = element("table", { class: "heat" });
    const featureNames = [...new Set(atSlot.map((r) => r.feature))].sort();
    heat.append(element("tr", {}, [element("th", { text: "head" }),
      ...featureNames.map((name) => element("th", { text: name }))]));
    for (const head of heads) {
      const cells = featureNames.map((name) => {
        const r = atSlot.find((x) => x.head === head && x.feature === name);
        const v = r ? r.iou : null;
        return element("td", { text: number(v, 3), style: v === null ? "" : `background:${colour(v / 0.6)}` });
      });
      heat.append(element("tr", {}, [element("th", { text: head >= 0 ? String(head) : hasHeads ? "mean" : "—" }), ...cells]));
    }
    page.replaceChildren(
      element("h2", { text: `Per-feature alignment: ${dataset.name}` }), controls,
      element("h3", { text: `IoU @ ${f.threshold}% per building-part type` }),
      htmlTable(breakdown, ["feature", "mean IoU", "mean coverage", "pointing rate", "n images"], "breakdown"),
      element("h3", { text: `Head × feature: mean IoU @ ${f.threshold}%, layer ${f.layer < 0 ? "—" : f.layer}` }),
      heat,
      element("p", { class: "note", text: "Each image is scored against the boxes of one building-part " +
        "type at a time (alignment_features.parquet); means over the images showing that type. " +
        "Heatmap colours: viridis over IoU 0 to 0.6." }));
  }

  // ---- geo probes and captions ------------------------------------------------------------------
  function renderGeo() {
    const page = $("#page-geo");
    page.replaceChildren(element("h2", { text: "Geographic knowledge (street-view datasets)" }));
    if (!state.index.geo.length) {
      page.append(element("p", { text: "No street-view (geo) dataset in this configuration." }));
    }
    const titles = { probes: "Linear probes (held-out accuracy)", knn: "kNN geolocation",
                     geometry: "Embedding geometry (cosine vs distance)" };
    for (const geo of state.index.geo) {
      page.append(element("h3", { text: geo.dataset }));
      for (const [name, table] of Object.entries(geo.tables)) {
        page.append(element("h4", { text: titles[name] || name }));
        page.append(htmlTable(rowsOf(table), Object.keys(table.columns), `geo-${name}`));
      }
    }
  }

  const captionView = {};
  function renderCaptions() {
    const page = $("#page-captions");
    page.replaceChildren(element("h2", { text: "Caption geo-profiles" }));
    if (!state.index.captions.length) {
      page.append(element("p", { text: "No caption dataset (or caption stage) in this configuration." }));
    }
    for (const captions of state.index.captions) {
      const rows = (captions.rows ||= rowsOf(captions.distributions));
      const view = (captionView[captions.dataset] ||= {});
      const levels = [...new Set(rows.map((r) => r.level))];
      const entities = [...new Set(rows.map((r) => r.entity))];
      if (!levels.includes(view.level)) view.level = levels.includes("continent") ? "continent" : levels[0];
      if (!entities.includes(view.entity)) view.entity = entities.includes("all") ? "all" : entities[0];
      const redraw = (value, name) => { view[name] = value; renderCaptions(); };
      const shown = rows.filter((r) => r.level === view.level && r.entity === view.entity)
        .sort((a, b) => b.share - a.share);
      const table = element("table", { class: "captions" });
      table.append(element("tr", {}, ["place", "count", "share", ""].map((c) => element("th", { text: c }))));
      for (const r of shown.slice(0, 40)) {
        table.append(element("tr", {}, [element("td", { class: "text", text: r.place }),
          element("td", { text: String(r.count) }), element("td", { text: number(r.share, 3) }),
          element("td", { class: "text" }, [element("span", { class: "bar", style: `width:${Math.round(300 * r.share)}px` })])]));
      }
      page.append(element("h3", { text: captions.dataset }),
        element("div", { class: "controls" }, [
          select("level", levels.map((l) => [l, l]), view.level, redraw),
          select("entity", entities.map((e) => [e, e]), view.entity, redraw)]),
        table, element("p", { class: "note", text: shown.length > 40 ? `top 40 of ${shown.length} places` : "" }));
    }
  }

  // ---- registration (called by the data files) --------------------------------------------------
  function registerIndex(index) {
    state.index = index;
    try {
      renderGallery();
      renderLeaderboard();
      renderGeo();
      renderCaptions();
      window.addEventListener("hashchange", route);
      route();
      document.body.dataset.ready = "1";
    } catch (error) {
      showError(`dashboard failed: ${error.message}`);
      throw error;
    }
  }
  function registerImage(dataset, imageId, payload) {
    payload.entries.forEach(labelSlots);
    state.images[`${dataset}/${imageId}`] = payload;
  }
  function registerFeatures(dataset, model, table) { state.features[`${dataset}/${model}`] = { table }; }

  return {
    registerIndex, registerImage, registerFeatures, state,
    timings: () => state.timings,
    // exposed for tests: the page's own decoders and resampler
    b85decode, formatScore, upsample, slotMap, massRegion,
  };
})();
window.encoderlens = encoderlens;
