// encoderlens dashboard: a static page over the data files written by encoderlens.report.dashboard.
// Data arrive as <script> files calling encoderlens.register*(), because browsers block fetch() of
// local files under file://. Binary arrays are base85 text (RFC 1924 alphabet, Python's b85encode).
"use strict";

const encoderlens = (() => {
  const state = {
    index: null, images: {}, features: {}, loading: {},
    dataset: 0, image: null, selection: {}, feature: {}, timings: [], renders: 0,
    // how the maps are drawn (not what is scored): heatmap opacity, expert boxes, region outline
    view: { opacity: 0.55, boxes: true, outline: true },
    gallerySort: { key: "order", descending: true },
    labelRects: {},  // per panel: the box labels' rectangles as last drawn (for tests)
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
  // the pointing game is a hit or a miss; only a maximum shared by several pixels gives a fraction
  // (the share of the tied maxima near a box: the expected hit of a random tie-break)
  function formatPointing(code) {
    if (code === MISSING || code === undefined) return "n/a";
    if (code === SCORE_SCALE) return "hit";
    if (code === 0) return "miss";
    return `${formatScore(code)} of tied maxima`;
  }
  const POINTING_NOTE = "hit: the map's maximum lies on (or within the tolerance of) an expert box; " +
    "miss: it does not. Where several pixels share the maximum, the share of them that hit.";

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
  function select(name, options, value, onChange, label = name.replace(/-\d+$/, "")) {
    const node = element("select", { name, id: `select-${name}` });
    for (const [optionValue, label] of options) {
      node.append(element("option", { value: String(optionValue), text: label }));
    }
    if (options.some(([v]) => String(v) === String(value))) node.value = String(value);
    node.addEventListener("change", () => onChange(node.value, name));
    return element("label", {}, [label, node]);
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
  // #image/<dataset>/<image>?model=..&variant=..&method=..&layer=..&head=..&threshold=..&opacity=..
  // &boxes=0|1&outline=0|1: the whole view, so that a view can be shared as a link
  const NUMERIC = ["layer", "head", "threshold"];
  function applyQuery(query) {
    const params = new URLSearchParams(query || "");
    for (const name of ["model", "variant", "method", ...NUMERIC]) {
      if (params.has(name)) state.selection[name] = NUMERIC.includes(name) ? Number(params.get(name)) : params.get(name);
    }
    if (params.has("opacity")) state.view.opacity = Math.min(1, Math.max(0, Number(params.get("opacity"))));
    for (const name of ["boxes", "outline"]) if (params.has(name)) state.view[name] = params.get(name) !== "0";
  }
  function imageHash() {
    const s = state.selection, v = state.view;
    const query = new URLSearchParams({
      model: s.model, variant: s.variant, method: s.method ?? "", layer: s.layer ?? "", head: s.head ?? "",
      threshold: s.threshold, opacity: v.opacity, boxes: v.boxes ? 1 : 0, outline: v.outline ? 1 : 0 });
    return `#image/${state.dataset}/${state.image}?${query}`;
  }
  function route() {
    const [path, query] = (location.hash.slice(1) || "gallery").split("?");
    const [page, datasetIndex, imageIndex] = path.split("/");
    if (page === "image" && imageIndex !== undefined) {
      applyQuery(query);
      openImage(Number(datasetIndex), Number(imageIndex));
    } else if (page === "image" && state.image === null && currentDataset()?.images.length) {
      openImage(state.dataset, 0);
    }
    if (page === "features") renderFeatures();
    if (page === "failures") {
      // #failures/<geo dataset>/<row>: that failure opened with its map and neighbours
      if (datasetIndex !== undefined) failureView.dataset = Number(datasetIndex);
      failureView.open = imageIndex === undefined ? null : Number(imageIndex);
      renderFailures();
    }
    showPage(page);
  }
  const currentDataset = () => state.index.datasets[state.dataset];
  // the threshold of the single-threshold figures (figures.threshold, else the middle configured one)
  const referenceThreshold = (dataset) => (dataset.thresholds.includes(dataset.reference_threshold)
    ? dataset.reference_threshold : [...dataset.thresholds].sort((a, b) => a - b)[(dataset.thresholds.length - 1) >> 1]);

  // ---- gallery ----------------------------------------------------------------------------------
  function renderGallery() {
    const page = $("#page-gallery");
    page.replaceChildren();
    if (!state.index.datasets.length) {
      page.append(element("p", { text: "No annotated dataset in this configuration." }));
    }
    const sort = state.gallerySort;
    state.index.datasets.forEach((dataset, d) => {
      page.append(element("h2", { text: `${dataset.name}: ${dataset.images.length} annotated images` +
                                        (dataset.earlier ? " (from an earlier run, not in this config)" : "") }));
      const scores = dataset.gallery_scores || { keys: [], values: [] };
      const redraw = (value, name) => {
        if (name === "order") sort.descending = value === "1"; else sort.key = value;
        renderGallery();
      };
      page.append(element("div", { class: "controls" }, [
        select(d === 0 ? "sort" : `sort-${d}`, [["order", "manifest order"], ["boxes", "number of boxes"],
          ...scores.keys.map((k, j) => [`score:${j}`, `IoU @ ${dataset.reference_threshold}%: ${k}`])], sort.key, redraw),
        select(d === 0 ? "order" : `order-${d}`, [["1", "highest first"], ["0", "lowest first"]],
               sort.descending ? "1" : "0", (value) => redraw(value, "order")),
      ]));
      const value = (i) => {
        if (sort.key === "boxes") return dataset.images[i].boxes.length;
        if (sort.key.startsWith("score:")) return scores.values[i]?.[Number(sort.key.slice(6))] ?? null;
        return null;
      };
      const order = dataset.images.map((_, i) => i);
      if (sort.key !== "order") {
        // images without a score (unscorable) go last either way
        order.sort((a, b) => (value(a) === null) - (value(b) === null) ||
                             (sort.descending ? value(b) - value(a) : value(a) - value(b)) || a - b);
      }
      const grid = element("div", { class: "gallery" });
      for (const i of order) {
        const image = dataset.images[i];
        const shown = value(i);
        grid.append(element("a", { href: `#image/${d}/${i}`, "data-index": String(i) }, [
          element("img", { src: image.thumb, loading: "lazy", alt: image.id }),
          `${image.id} (${image.boxes.length} boxes)` +
          (sort.key.startsWith("score:") ? ` IoU ${shown === null ? "n/a" : shown.toFixed(3)}` : "")]));
      }
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
    if (!dataset.thresholds.includes(s.threshold)) s.threshold = referenceThreshold(dataset);
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
      if (name === "opacity") state.view.opacity = Number(value);
      else if (name === "boxes" || name === "outline") state.view[name] = Boolean(value);
      else s[name] = NUMERIC.includes(name) ? Number(value) : value;
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
      slider("opacity", state.view.opacity, changed),
      checkbox("boxes", "expert boxes", state.view.boxes, changed),
      checkbox("outline", "region outline", state.view.outline, changed),
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
        "the analysis does, coloured with viridis from the map's own minimum to its maximum (the " +
        "colour bar under each panel gives the values). White outline: the top pixels holding the " +
        "threshold's share of the mass. Boxes: expert annotations. Scores are read from " +
        `alignment.parquet (4 decimals), not recomputed. Default threshold: ${referenceThreshold(dataset)}%, ` +
        "the figures' reference threshold. Pointing game: " + POINTING_NOTE }));
    if (location.hash.startsWith("#image/") && location.hash !== imageHash()) {
      history.replaceState(null, "", imageHash());  // the link to this view; no hashchange
    }
    page.dataset.ready = "1";
    state.renders += 1;
  }

  function slider(name, value, onChange) {
    const node = element("input", { type: "range", name, id: `select-${name}`, min: "0", max: "1", step: "0.05",
                                    value: String(value) });
    node.addEventListener("change", () => onChange(node.value, name));
    return element("label", {}, [`heatmap ${name}`, node]);
  }
  function checkbox(name, label, checked, onChange) {
    const node = element("input", { type: "checkbox", name, id: `select-${name}` });
    node.checked = checked;
    node.addEventListener("change", () => onChange(node.checked, name));
    return element("label", { class: "check" }, [node, label]);
  }

  // viridis from the map's minimum (left) to its maximum (right), with the values at both ends
  function colourBar(prepared) {
    const wrap = element("div", { class: "colourbar" });
    if (!prepared || !prepared.values) return wrap;
    const bar = element("canvas", { width: "256", height: "10", title: "viridis" });
    const ctx = bar.getContext("2d");
    for (let i = 0; i < 256; i++) { ctx.fillStyle = colour(i / 255); ctx.fillRect(i, 0, 1, 10); }
    // enough significant digits that the two ends differ (a tiny model's maps span 0.0147 .. 0.0153)
    let digits = 3;
    while (digits < 8 && prepared.hi > prepared.lo &&
           Number(prepared.lo.toPrecision(digits)) === Number(prepared.hi.toPrecision(digits))) digits += 1;
    const value = (v) => String(Number(v.toPrecision(digits)));
    wrap.append(element("span", { class: "lo", text: value(prepared.lo) }), bar,
                element("span", { class: "hi", text: value(prepared.hi) }),
                element("span", { class: "cmap", text: "viridis, map value (attention weight)" }));
    return wrap;
  }

  function imagePanel(image, variant, s) {
    const dataset = currentDataset();
    const entry = entriesOf(s.model, variant).find((e) => e.method === s.method);
    const panel = element("div", { class: "panel", "data-variant": variant });
    panel.append(element("h3", { text: `${s.model} · ${variant}` }));
    const canvas = element("canvas", { class: "overlay" });
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
      element("tr", { title: POINTING_NOTE }, [element("th", { class: "text", text: "pointing game" }),
                         element("td", { class: "pointing", text: formatPointing(score(n + 1)) })]),
    ]));
    drawOverlay(canvas, image, entry, slot, s.threshold, variant);
    panel.insertBefore(colourBar(entry && entry.prepared), canvas.nextSibling);
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
    return (entry.prepared = { slot, values, lo, hi, heat: toCanvas(heat) });
  }

  function drawOverlay(canvas, image, entry, slot, threshold, panelKey) {
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
      ctx.globalAlpha = state.view.opacity;
      ctx.drawImage(prepared.heat, 0, 0, W, H);
      ctx.globalAlpha = 1;
      if (state.view.outline) ctx.drawImage(toCanvas(outline), 0, 0, W, H);
    } else {
      ctx.fillStyle = "rgba(0,0,0,0.5)";
      ctx.fillRect(0, 0, W, 24);
      ctx.fillStyle = "#fff";
      ctx.fillText(entry ? "map not scorable (NaN or no mass)" : "no map for this selection", 6, 16);
    }
    state.labelRects[panelKey] = [];
    if (state.view.boxes) drawBoxes(ctx, image, W, H, state.labelRects[panelKey]);
  }

  // Expert boxes with their labels. A label goes to the first place, of above / inside the top /
  // below / inside the bottom of its box, that stays on the canvas and overlaps no label drawn
  // before it (slid sideways to fit); failing all, it is left out and its box keeps its colour.
  function drawBoxes(ctx, image, W, H, placed) {
    const features = currentDataset().features;
    const LABEL_H = 14;
    ctx.lineWidth = 2;
    ctx.font = "11px sans-serif";
    ctx.textBaseline = "top";
    const overlaps = (a, b) => a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h;
    for (const [f, left, top, width, height] of image.boxes) {
      const colourOf = PALETTE[f % PALETTE.length];
      const x0 = left * W, y0 = top * H, x1 = (left + width) * W, y1 = (top + height) * H;
      ctx.strokeStyle = colourOf;
      ctx.strokeRect(x0, y0, x1 - x0, y1 - y0);
      const w = Math.min(W, Math.ceil(ctx.measureText(features[f]).width) + 6);
      const x = Math.max(0, Math.min(W - w, x0));
      const spots = [y0 - LABEL_H, y0, y1, y1 - LABEL_H];
      let rect = null;
      for (const y of spots) {
        for (const dx of [0, w, -w, 2 * w, -2 * w]) {
          const candidate = { x: Math.max(0, Math.min(W - w, x + dx)), y, w, h: LABEL_H };
          if (y >= 0 && y + LABEL_H <= H && !placed.some((r) => overlaps(r, candidate))) { rect = candidate; break; }
        }
        if (rect) break;
      }
      if (!rect) continue;
      placed.push({ ...rect, label: features[f] });
      ctx.fillStyle = "rgba(0,0,0,0.65)";
      ctx.fillRect(rect.x, rect.y, rect.w, rect.h);
      ctx.fillStyle = colourOf;
      ctx.fillText(features[f], rect.x + 3, rect.y + 1);
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
      coverage: formatScore(b.scores[n]), "pointing game (share)": formatScore(b.scores[n + 1]) }));
    const wrap = element("div", {}, [element("h3", { text: "Baselines on this image" })]);
    wrap.append(htmlTable(rows, ["baseline", `IoU @ ${threshold}%`, "coverage", "pointing game (share)"], "baselines"));
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
    if (!dataset.thresholds.includes(board.threshold)) board.threshold = referenceThreshold(dataset);
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
    if (dataset.faithfulness) page.append(faithfulnessView(dataset));
  }

  // plausibility (IoU) against faithfulness (deletion AUC) of each model's methods, with their CIs,
  // from the statistics stage's plausibility_faithfulness.parquet (the figure's points)
  function faithfulnessView(dataset) {
    const rows = (dataset.faithfulnessRows ||= rowsOf(dataset.faithfulness));
    const wrap = element("div", { class: "faithfulness" }, [element("h3", { text: "Plausibility vs faithfulness" })]);
    const finite = (values) => values.filter((v) => v !== null && Number.isFinite(v));
    const xs = finite(rows.flatMap((r) => [r.iou_ci_low, r.iou_ci_high, r.iou_mean]));
    const ys = finite(rows.flatMap((r) => [r.deletion_ci_low, r.deletion_ci_high, r.deletion_mean]));
    if (xs.length && ys.length) {
      const pad = (lo, hi) => { const d = (hi - lo) * 0.1 || 0.01; return [lo - d, hi + d]; };
      const f = frame({ x: pad(Math.min(...xs), Math.max(...xs)), y: pad(Math.min(...ys), Math.max(...ys)),
                        xLabel: `IoU at ${number(rows[0].threshold)}% mass (plausibility)`,
                        yLabel: "deletion AUC (lower: more faithful)", height: 300 });
      const methods = [...new Set(rows.map((r) => r.method))];
      const models = [...new Set(rows.map((r) => `${r.model} (${r.variant})`))];
      for (const r of rows) {
        const colour = SERIES[methods.indexOf(r.method) % SERIES.length];
        const x = f.sx(r.iou_mean), y = f.sy(r.deletion_mean);
        if (r.iou_ci_low !== null) f.svg.append(svgNode("line", { x1: f.sx(r.iou_ci_low), x2: f.sx(r.iou_ci_high), y1: y, y2: y, stroke: colour }));
        if (r.deletion_ci_low !== null) f.svg.append(svgNode("line", { x1: x, x2: x, y1: f.sy(r.deletion_ci_low), y2: f.sy(r.deletion_ci_high), stroke: colour }));
        const shape = models.indexOf(`${r.model} (${r.variant})`) % 2
          ? svgNode("rect", { x: x - 4, y: y - 4, width: 8, height: 8 }) : svgNode("circle", { cx: x, cy: y, r: 4.5 });
        shape.setAttribute("fill", colour);
        shape.setAttribute("class", "point");
        shape.setAttribute("data-method", r.method);
        shape.append(svgNode("title", {}, `${r.model} (${r.variant}) ${r.method}: IoU ${number(r.iou_mean)}, deletion AUC ${number(r.deletion_mean)}`));
        f.svg.append(shape);
      }
      wrap.append(f.svg, legend(methods));
    }
    const ci = (low, high) => (low === null ? "—" : `[${number(low)}, ${number(high)}]`);
    wrap.append(htmlTable(rows.map((r) => ({
      model: r.model, variant: r.variant, method: r.method, layer: r.layer < 0 ? "—" : r.layer, n: r.n,
      "IoU": r.iou_mean, "IoU 95% CI": ci(r.iou_ci_low, r.iou_ci_high), "deletion AUC": r.deletion_mean,
      "deletion 95% CI": ci(r.deletion_ci_low, r.deletion_ci_high), "Spearman ρ (images)": r.rho_images })),
      ["model", "variant", "method", "layer", "n", "IoU", "IoU 95% CI", "deletion AUC", "deletion 95% CI",
       "Spearman ρ (images)"], "faithfulness"));
    wrap.append(element("p", { class: "note", text: "Each method's head-mean map at its last stored layer: mean IoU " +
      "with the expert boxes and mean deletion AUC (the explained scalar's area under the deletion curve; lower: " +
      "the model needs what the map ranks first) over the same images, with bootstrap 95% CIs " +
      "(plausibility_faithfulness.parquet)." }));
    return wrap;
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
    pick("threshold", dataset.thresholds, () => referenceThreshold(dataset));
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

  // ---- small SVG charts (geo and captions) -------------------------------------------------------
  // Every chart is an <svg> with a viewBox and width 100%, so it scales to the page and never makes
  // it scroll sideways; series colours follow the figures' order.
  const SVG = "http://www.w3.org/2000/svg";
  function svgNode(tag, attributes = {}, text) {
    const node = document.createElementNS(SVG, tag);
    for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, String(value));
    if (text !== undefined) node.textContent = text;
    return node;
  }
  const SERIES = ["#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d", "#666666"];
  function legend(names) {
    return element("p", { class: "legend" }, names.map((name, k) => element("span", {}, [
      element("i", { style: `background:${SERIES[k % SERIES.length]}` }), name])));
  }
  // axes: x from categories or a (log) scale, y linear; returns the svg and the two mappings
  function frame({ width = 720, height = 260, xLabel = "", yLabel = "", y = [0, 1], yTicks = 5, x = null,
                   logX = false, title = "" }) {
    const m = { left: 56, right: 12, top: title ? 22 : 10, bottom: 40 };
    const svg = svgNode("svg", { viewBox: `0 0 ${width} ${height}`, class: "chart", role: "img" });
    if (title) svg.append(svgNode("text", { x: m.left, y: 14, class: "title" }, title));
    const [y0, y1] = y;
    const sy = (v) => m.top + (height - m.top - m.bottom) * (1 - (v - y0) / (y1 - y0 || 1));
    let sx = null;
    if (x) {
      const [x0, x1] = logX ? x.map(Math.log10) : x;
      sx = (v) => m.left + (width - m.left - m.right) * (((logX ? Math.log10(v) : v) - x0) / (x1 - x0 || 1));
      const ticks = logX ? [] : [x0, (x0 + x1) / 2, x1];
      if (logX) for (let e = Math.ceil(x0); e <= Math.floor(x1); e++) ticks.push(10 ** e);
      for (const t of ticks) {
        svg.append(svgNode("line", { x1: sx(t), x2: sx(t), y1: height - m.bottom, y2: height - m.bottom + 4, class: "tick" }));
        svg.append(svgNode("text", { x: sx(t), y: height - m.bottom + 15, "text-anchor": "middle" },
                           logX ? String(t) : number(t, 0)));
      }
    }
    for (let k = 0; k <= yTicks; k++) {
      const v = y0 + (y1 - y0) * k / yTicks;
      svg.append(svgNode("line", { x1: m.left, x2: width - m.right, y1: sy(v), y2: sy(v), class: "grid" }));
      svg.append(svgNode("text", { x: m.left - 4, y: sy(v) + 4, "text-anchor": "end" }, number(v, 2)));
    }
    svg.append(svgNode("text", { x: (m.left + width - m.right) / 2, y: height - 4, "text-anchor": "middle", class: "label" }, xLabel));
    svg.append(svgNode("text", { x: 12, y: (m.top + height - m.bottom) / 2, "text-anchor": "middle", class: "label",
                                 transform: `rotate(-90 12 ${(m.top + height - m.bottom) / 2})` }, yLabel));
    return { svg, sx, sy, m, width, height };
  }

  // grouped bars with whiskers and a grey tick per bar (e.g. majority baseline)
  function barChart({ groups, series, value, low, high, tick, yLabel, y = [0, 1], title }) {
    const f = frame({ yLabel, y, title, height: 280 });
    const plotW = f.width - f.m.left - f.m.right;
    const groupW = plotW / Math.max(1, groups.length), barW = (groupW * 0.8) / Math.max(1, series.length);
    groups.forEach((group, g) => {
      f.svg.append(svgNode("text", { x: f.m.left + groupW * (g + 0.5), y: f.height - f.m.bottom + 15,
                                     "text-anchor": "middle" }, group));
      series.forEach((name, k) => {
        const v = value(group, name);
        if (v === null || v === undefined) return;
        const x = f.m.left + groupW * g + groupW * 0.1 + barW * k;
        f.svg.append(svgNode("rect", { x, y: f.sy(Math.max(v, y[0])), width: barW * 0.9, height: Math.max(0, f.sy(y[0]) - f.sy(v)),
                                       fill: SERIES[k % SERIES.length], class: "column", "data-group": group,
                                       "data-series": name, "data-value": v }, undefined));
        f.svg.lastChild.append(svgNode("title", {}, `${name} · ${group}: ${number(v, 3)}`));
        const lo = low ? low(group, name) : null, hi = high ? high(group, name) : null;
        if (lo !== null && hi !== null && lo !== undefined && hi !== undefined) {
          const cx = x + barW * 0.45;
          f.svg.append(svgNode("line", { x1: cx, x2: cx, y1: f.sy(lo), y2: f.sy(hi), class: "whisker" }));
        }
        const t = tick ? tick(group, name) : null;
        if (t !== null && t !== undefined) {
          f.svg.append(svgNode("line", { x1: x - 1, x2: x + barW * 0.9 + 1, y1: f.sy(t), y2: f.sy(t), class: "baseline" }));
        }
      });
    });
    return f.svg;
  }

  // lines (optionally with a ±band) over a numeric x, one per series
  function lineChart({ series, xLabel, yLabel, x, y, logX = false, title, steps = false }) {
    const f = frame({ xLabel, yLabel, x, y, logX, title });
    series.forEach((s, k) => {
      const colourOf = SERIES[k % SERIES.length];
      if (s.band) {
        const upper = s.points.map((p) => `${f.sx(p.x)},${f.sy(Math.min(y[1], p.y + p.band))}`);
        const lower = s.points.slice().reverse().map((p) => `${f.sx(p.x)},${f.sy(Math.max(y[0], p.y - p.band))}`);
        f.svg.append(svgNode("polygon", { points: [...upper, ...lower].join(" "), fill: colourOf, "fill-opacity": 0.15 }));
      }
      const points = steps
        ? s.points.flatMap((p) => [`${f.sx(p.x0)},${f.sy(p.y)}`, `${f.sx(p.x1)},${f.sy(p.y)}`])
        : s.points.map((p) => `${f.sx(p.x)},${f.sy(p.y)}`);
      f.svg.append(svgNode("polyline", { points: points.join(" "), fill: "none", stroke: colourOf, "stroke-width": 2,
                                         class: "series", "data-series": s.name }));
    });
    return f.svg;
  }

  function details(summary, tables) {
    const node = element("details", { class: "internals" }, [element("summary", { text: summary })]);
    for (const [name, table] of tables) {
      node.append(element("h4", { text: name }),
                  element("div", { class: "scroll" }, [htmlTable(rowsOf(table), Object.keys(table.columns), `raw-${name}`)]));
    }
    return node;
  }
  const unique = (rows, field) => [...new Set(rows.map((r) => r[field]))];
  const label = (r) => [r.model, r.variant && r.variant !== "frozen" ? r.variant : null, r.features]
    .filter(Boolean).join(" · ");

  // ---- geo: probes, GeoScore, cosine vs distance, gallery study, distance calibration ------------
  const geoView = {};
  function renderGeo() {
    const page = $("#page-geo");
    page.replaceChildren(element("h2", { text: "Geographic knowledge (street-view datasets)" }));
    if (!state.index.geo.length) {
      page.append(element("p", { text: "No street-view (geo) dataset in this configuration." }));
    }
    state.index.geo.forEach((geo, g) => {
      const charts = geo.charts || {};
      const view = (geoView[geo.dataset] ||= {});
      const section = element("section", { class: "geo", "data-dataset": geo.dataset });
      section.append(element("h3", { text: geo.dataset + (geo.earlier ? " (from an earlier run, not in this config)" : "") }));
      if (charts.probes) {
        const rows = rowsOf(charts.probes);
        const levels = unique(rows, "level"), series = unique(rows.map((r) => ({ s: label(r) })), "s");
        const find = (level, name) => rows.find((r) => r.level === level && label(r) === name);
        section.append(element("h4", { text: "Linear probes: held-out top-1 accuracy per level" }),
          barChart({ groups: levels, series, yLabel: "top-1 accuracy", y: [0, 1],
                     value: (l, n) => find(l, n)?.top1, low: (l, n) => find(l, n)?.ci_low,
                     high: (l, n) => find(l, n)?.ci_high, tick: (l, n) => find(l, n)?.majority_top1 }),
          legend(series),
          element("p", { class: "note", text: "Bars: top-1 accuracy of a linear probe on the frozen embedding; " +
            "whiskers: Wilson 95% interval over the test images; grey ticks: the majority-class accuracy " +
            "on the same split (a probe below its tick learned nothing). Levels whose classes could not be " +
            "probed are left out (see the details)." }));
      }
      if (charts.geoscore) {
        const rows = rowsOf(charts.geoscore);
        const methods = unique(rows, "method");
        if (!methods.includes(view.method)) view.method = methods.includes("top1") ? "top1" : methods[0];
        const own = rows.filter((r) => r.method === view.method);
        const names = unique(own.map((r) => ({ s: label(r) })), "s");
        const series = names.map((name) => {
          const bins = own.filter((r) => label(r) === name);
          const total = bins.reduce((a, r) => a + r.count, 0) || 1;
          return { name, points: bins.map((r) => ({ x0: r.lo, x1: r.hi, y: r.count / total })) };
        });
        const top = Math.max(0.05, ...series.flatMap((s) => s.points.map((p) => p.y)));
        section.append(element("h4", { text: "kNN geolocation: GeoScore of the held-out queries" }),
          element("div", { class: "controls" }, [select(`geo-method-${g}`, methods.map((m) => [m, m]), view.method,
            (value) => { view.method = value; renderGeo(); }, "kNN prediction")]),
          lineChart({ series, steps: true, xLabel: "GeoScore (5000 = exact, 0 = far)", yLabel: "share of queries",
                      x: [0, 5000], y: [0, Math.min(1, top * 1.1)] }),
          legend(names));
      }
      if (charts.knn) {
        const rows = rowsOf(charts.knn);
        const columns = ["model", "variant", "features", "method", "geoscore", "median_km",
                         ...Object.keys(charts.knn.columns).filter((c) => c.endsWith("_accuracy"))];
        section.append(element("div", { class: "scroll" }, [htmlTable(rows, columns.filter((c) => c in charts.knn.columns), "geo-knn")]));
      }
      if (charts.geometry_bins) {
        const rows = rowsOf(charts.geometry_bins).filter((r) => r.count > 0);
        const names = unique(rows.map((r) => ({ s: label(r) })), "s");
        const series = names.map((name) => ({ name, band: true, points: rows.filter((r) => label(r) === name)
          .map((r) => ({ x: Math.sqrt(Math.max(r.lo_km, 1) * r.hi_km), y: r.cosine_mean, band: r.cosine_std || 0 })) }));
        const xs = rows.flatMap((r) => [Math.max(r.lo_km, 1), r.hi_km]);
        const ys = rows.flatMap((r) => [r.cosine_mean - (r.cosine_std || 0), r.cosine_mean + (r.cosine_std || 0)]);
        section.append(element("h4", { text: "Embedding geometry: cosine similarity against distance" }),
          lineChart({ series, logX: true, xLabel: "distance between the two images (km, log scale)",
                      yLabel: "mean cosine", x: [Math.min(...xs), Math.max(...xs)],
                      // the range of the means and bands, not from 0: cosines of one encoder often differ in the 2nd decimal
                      y: [Math.max(-1, Math.min(...ys) - 0.02), Math.min(1, Math.max(...ys) + 0.02)] }),
          legend(names),
          element("p", { class: "note", text: "Mean cosine similarity of image pairs per distance bin (band: ±1 s.d.); " +
            "a curve falling with distance means the embedding orders images by place." }));
      }
      if (charts.gallery) {
        const rows = rowsOf(charts.gallery);
        const kinds = unique(rows, "gallery");
        const names = unique(rows.map((r) => ({ s: [r.model, r.variant !== "frozen" ? r.variant : null].filter(Boolean).join(" · ") })), "s");
        const of = (kind, name) => rows.filter((r) => r.gallery === kind &&
          [r.model, r.variant !== "frozen" ? r.variant : null].filter(Boolean).join(" · ") === name).map((r) => r.geoscore);
        const mean = (v) => (v.length ? v.reduce((a, b) => a + b, 0) / v.length : null);
        section.append(element("h4", { text: "Gallery study: GeoScore by how the kNN gallery was sampled" }),
          barChart({ groups: kinds, series: names, yLabel: "mean GeoScore over seeds", y: [0, 5000],
                     value: (k, n) => mean(of(k, n)), low: (k, n) => (of(k, n).length ? Math.min(...of(k, n)) : null),
                     high: (k, n) => (of(k, n).length ? Math.max(...of(k, n)) : null) }),
          legend(names),
          element("p", { class: "note", text: "Bars: mean GeoScore over the seeds for each gallery sampling; whiskers: " +
            "the lowest and highest seed." }));
      }
      if (charts.calibration) {
        const rows = rowsOf(charts.calibration);
        section.append(element("h4", { text: "Distance calibration (distcal) against the frozen encoder" }),
          element("div", { class: "scroll" }, [htmlTable(rows, Object.keys(charts.calibration.columns), "geo-calibration")]),
          element("p", { class: "note", text: "Held-out queries; collapse: the calibrated embeddings lost half " +
            "their effective rank or spread." }));
      }
      section.append(details("All columns (fit internals: iterations, convergence, stratification)",
                             Object.entries(geo.tables)));
      page.append(section);
    });
  }

  // ---- failures: worst kNN queries and most confident probe errors, each with its map and neighbours --
  const failureView = { dataset: null, model: null, kind: "all", open: null };
  const entityOf = (r) => (r.variant && r.variant !== "frozen" ? `${r.model}/${r.variant}` : r.model);
  const failureText = (r) => (r.kind === "knn" ? `kNN query #${r.rank}` : `${r.level} probe error #${r.rank}`);
  function renderFailures() {
    const page = $("#page-failures");
    page.dataset.ready = "0";
    page.replaceChildren(element("h2", { text: "Failures: worst kNN queries and most confident probe errors" }));
    const sets = state.index.geo.map((g, i) => [g, i]).filter(([g]) => g.failures && g.failures.table.n);
    if (!sets.length) {
      page.append(element("p", { text: "No failure table (geo.depth, results/<dataset>/geo/failures.parquet) in this configuration." }));
      page.dataset.ready = "1";
      return;
    }
    if (!sets.some(([, i]) => i === failureView.dataset)) { failureView.dataset = sets[0][1]; failureView.open = null; }
    const geo = state.index.geo[failureView.dataset];
    const failures = geo.failures;
    const rows = (failures.rows ||= rowsOf(failures.table).map((r, k) => ({ ...r, index: k })));
    const opened = failureView.open === null ? null : rows[failureView.open];
    if (failureView.open !== null && !opened) { showError(`no failure ${failureView.open} in ${geo.dataset}`); failureView.open = null; }
    const entities = unique(rows.map((r) => ({ e: entityOf(r) })), "e");
    if (opened) failureView.model = entityOf(opened);
    if (!entities.includes(failureView.model)) failureView.model = entities[0];
    const redraw = (value, name) => {
      if (name === "failure-dataset") { failureView.dataset = Number(value); failureView.model = null; }
      else if (name === "failure-model") failureView.model = value;
      else failureView.kind = value;
      failureView.open = null;
      history.replaceState(null, "", "#failures");
      renderFailures();
    };
    page.append(element("div", { class: "controls" }, [
      select("failure-dataset", sets.map(([g, i]) => [i, g.dataset]), failureView.dataset, redraw, "dataset"),
      select("failure-model", entities.map((e) => [e, e]), failureView.model, redraw, "model"),
      select("failure-kind", [["all", "all"], ["knn", "kNN queries (lowest GeoScore)"],
                              ["probe", "probe errors (most confident)"]], failureView.kind, redraw, "kind"),
    ]));
    const pending = [];
    if (opened) {
      const { node, drawn } = failureDetail(geo, opened);
      page.append(node);
      pending.push(drawn);
    }
    const listed = rows.filter((r) => entityOf(r) === failureView.model &&
                                      (failureView.kind === "all" || r.kind === failureView.kind));
    const table = element("table", { class: "failures" });
    const textual = ["", "failure", "image", "true", "predicted"];
    table.append(element("tr", {}, [...textual, "error (km)", "GeoScore", "confidence", "neighbours"]
      .map((c) => element("th", { text: c, class: textual.includes(c) ? "text" : "" }))));
    const d = failureView.dataset;
    for (const r of listed) {
      const image = failures.images[r.image_id];
      const link = element("a", { href: `#failures/${d}/${r.index}`, class: "open", text: "open" });
      table.append(element("tr", { "data-index": String(r.index), "data-kind": r.kind,
                                   class: opened && opened.index === r.index ? "opened" : "" }, [
        element("td", { class: "text" }, [link]),
        element("td", { class: "text", text: `${failureText(r)}${r.kind === "probe" ? "" : ` (${r.features}, ${r.method})`}` }),
        element("td", { class: "text" }, image ? [element("a", { href: `#failures/${d}/${r.index}` }, [
          element("img", { src: image.thumb, loading: "lazy", alt: r.image_id, class: "thumb" })]), r.image_id] : [r.image_id]),
        element("td", { class: "text", text: String(r.true ?? "n/a") }),
        element("td", { class: "text", text: String(r.predicted ?? "n/a") }),
        element("td", { text: r.distance_km === null ? "n/a" : number(r.distance_km, 0) }),
        element("td", { text: r.geoscore === null ? "—" : number(r.geoscore, 0) }),
        element("td", { text: r.confidence === null ? "—" : number(r.confidence, 3) }),
        element("td", { text: String(r.neighbours ? r.neighbours.split(" ").length : 0) }),
      ]));
    }
    page.append(element("h3", { text: `${geo.dataset} · ${failureView.model}: ${listed.length} failures` }),
      element("div", { class: "scroll" }, [table]),
      element("p", { class: "note", text: "kNN queries: the held-out queries with the lowest GeoScore " +
        "(error in km to the nearest gallery image's location, whose place was the prediction). Probe errors: " +
        "held-out images the linear probe classified wrongly with the highest confidence (the predicted " +
        "class's probability; km to the spherical mean of the predicted class's images). Neighbours: the " +
        "nearest gallery images by the same embedding. From results/<dataset>/geo/failures.parquet." }));
    Promise.all(pending).then(() => {
      // an opened failure is drawn above the list: bring it into view (the link was clicked further down)
      if (opened && location.hash.startsWith("#failures/")) $("#page-failures .panel.failure").scrollIntoView({ block: "start" });
      page.dataset.ready = "1";
      state.renders += 1;
    },
                              (error) => showError(error.message));
  }

  function loadImage(src) {
    const image = new Image();
    image.src = src;
    return image.decode().then(() => image, () => { throw new Error(`cannot load ${src}`); });
  }

  // one failure: its image with the attention map over it, its facts, and its nearest gallery images
  function failureDetail(geo, r) {
    const failures = geo.failures;
    const image = failures.images[r.image_id];
    // the maps are the frozen models' (attention.h5 of frozen); a tuned variant's failure has none here
    const map = r.variant === "frozen" ? failures.maps[`${r.model}|${r.image_id}`] : undefined;
    const panel = element("div", { class: "panel failure", "data-index": String(r.index) });
    panel.append(element("h3", { text: `${entityOf(r)} · ${failureText(r)} · ${r.image_id}` }));
    const canvas = element("canvas", { class: "overlay" });
    panel.append(canvas);
    const facts = [["true", r.true], ["predicted", r.predicted],
                   ["error (km)", r.distance_km === null ? "n/a" : number(r.distance_km, 0)]];
    if (r.kind === "knn") facts.push(["GeoScore", number(r.geoscore, 0)], ["embedding · kNN", `${r.features} · ${r.method}`]);
    else facts.push(["confidence", number(r.confidence, 3)], ["embedding", r.features]);
    panel.append(element("table", { class: "facts" }, facts.map(([k, v]) => element("tr", {}, [
      element("th", { class: "text", text: k }), element("td", { class: `text ${k.split(" ")[0]}`, text: String(v ?? "n/a") })]))));
    const bar = element("div", { class: "colourbar" });
    panel.append(bar);
    const neighbours = element("div", { class: "neighbours" });
    const ids = r.neighbours ? r.neighbours.split(" ") : [];
    ids.forEach((id, k) => {
      const shown = failures.images[id];
      neighbours.append(element("figure", { "data-id": id }, [
        shown ? element("img", { src: shown.thumb, alt: id }) : element("span", { text: "(no copy)" }),
        element("figcaption", { text: `neighbour ${k + 1}: ${id}` })]));
    });
    panel.append(element("h4", { text: ids.length ? "Nearest gallery images" : "No neighbours listed" }), neighbours);
    const drawn = (image ? loadImage(image.image) : Promise.resolve(null)).then((photo) => {
      const side = 448 / Math.max(photo ? photo.naturalWidth : 1, photo ? photo.naturalHeight : 1);
      canvas.width = photo ? Math.round(photo.naturalWidth * side) : 448;
      canvas.height = photo ? Math.round(photo.naturalHeight * side) : 448;
      const ctx = canvas.getContext("2d");
      if (photo) ctx.drawImage(photo, 0, 0, canvas.width, canvas.height);
      canvas.dataset.map = "0";
      if (!map || map.range[0] === null) {
        bar.append(element("span", { class: "cmap", text: "no attention map for this model" }));
        return;
      }
      const [gh, gw] = map.grid, [lo, hi] = map.range;
      const codes = b85decode(map.map).subarray(0, gh * gw);
      const grid = new Float32Array(gh * gw);
      for (let i = 0; i < grid.length; i++) grid[i] = lo + codes[i] * (hi - lo) / 255;
      const size = 224;
      const values = upsample(grid, gh, gw, size);
      const heat = new ImageData(size, size);
      const pixels = new Uint32Array(heat.data.buffer);
      const levels = 255 / (hi > lo ? hi - lo : 1);
      for (let i = 0; i < values.length; i++) pixels[i] = LUT32[Math.max(0, Math.min(255, Math.round((values[i] - lo) * levels)))];
      ctx.globalAlpha = state.view.opacity;
      ctx.drawImage(toCanvas(heat), 0, 0, canvas.width, canvas.height);
      ctx.globalAlpha = 1;
      canvas.dataset.map = "1";
      bar.replaceWith(colourBar({ values, lo, hi }));
    });
    return { node: panel, drawn };
  }

  // ---- captions: where the captions place their images, accuracy per subset, diversity ----------
  const captionView = {};
  function renderCaptions() {
    const page = $("#page-captions");
    page.replaceChildren(element("h2", { text: "Caption geo-profiles" }));
    if (!state.index.captions.length) {
      page.append(element("p", { text: "No caption dataset (or caption stage) in this configuration." }));
    }
    state.index.captions.forEach((captions, c) => {
      const rows = (captions.rows ||= rowsOf(captions.distributions));
      const view = (captionView[captions.dataset] ||= {});
      const levels = unique(rows, "level"), entities = unique(rows, "entity");
      if (!levels.includes(view.level)) view.level = levels.includes("continent") ? "continent" : levels[0];
      if (!entities.includes(view.entity)) view.entity = entities.includes("all") ? "all" : entities[0];
      const redraw = (value, name) => { view[name.replace(/-\d+$/, "")] = value; renderCaptions(); };
      const shown = rows.filter((r) => r.level === view.level && r.entity === view.entity)
        .sort((a, b) => (a.place === "Unknown") - (b.place === "Unknown") || b.share - a.share);
      const total = shown.reduce((a, r) => a + r.count, 0);
      const unknown = shown.find((r) => r.place === "Unknown");
      const table = element("table", { class: "captions" });
      table.append(element("tr", {}, ["place", "count", "share", ""].map((h) => element("th", { text: h }))));
      const top = shown.filter((r) => r.place !== "Unknown").slice(0, 30).concat(unknown ? [unknown] : []);
      for (const r of top) {
        table.append(element("tr", { class: r.place === "Unknown" ? "unknown" : "" }, [
          element("td", { class: "text", text: r.place }), element("td", { text: String(r.count) }),
          element("td", { text: number(r.share, 3) }),
          element("td", { class: "text" }, [element("span", { class: r.place === "Unknown" ? "bar grey" : "bar",
                                                              style: `width:${Math.round(300 * r.share)}px` })])]));
      }
      const section = element("section", { class: "captions", "data-dataset": captions.dataset });
      section.append(element("h3", { text: captions.dataset + (captions.earlier ? " (from an earlier run, not in this config)" : "") }),
        element("h4", { text: "Where the captions place their images" }),
        element("div", { class: "controls" }, [
          select(`level-${c}`, levels.map((l) => [l, l]), view.level, redraw),
          select(`entity-${c}`, entities.map((e) => [e, e]), view.entity, redraw)]),
        table,
        element("p", { class: "note", text: `${total} captions in all; Unknown (no place found or resolved): ` +
          `${unknown ? unknown.count : 0} (${number(unknown ? unknown.share : 0, 3)}). ` +
          (shown.length - (unknown ? 1 : 0) > 30 ? `Top 30 of ${shown.length - (unknown ? 1 : 0)} places shown.` : "") }));
      if (captions.evaluation) {
        const evaluation = rowsOf(captions.evaluation);
        const groups = evaluation.map((r) => (r.scope === "subset" ? r.subset : r.scope));
        const find = (group) => evaluation[groups.indexOf(group)];
        section.append(element("h4", { text: "Country prediction accuracy per subset" }),
          barChart({ groups, series: ["accuracy"], y: [0, 1], yLabel: "accuracy",
                     value: (g) => find(g).accuracy, low: (g) => find(g).ci_low, high: (g) => find(g).ci_high }),
          element("p", { class: "note", text: "Captions with a known country; whiskers: Wilson 95% interval. " +
            evaluation.map((r, k) => `${groups[k]}: n = ${r.n}, Unknown ${r.n_unknown}`).join("; ") + "." }));
      }
      if (captions.diversity) {
        const diversity = rowsOf(captions.diversity);
        const groups = [...new Set(diversity.map((r) => (r.country ? `${r.entity} · ${r.country}` : r.entity)))].slice(0, 24);
        const find = (group) => diversity.find((r) => (r.country ? `${r.entity} · ${r.country}` : r.entity) === group);
        const top = Math.max(1, ...diversity.flatMap((r) => [r.vendi_image ?? 0, r.vendi_caption ?? 0]));
        section.append(element("h4", { text: "Diversity (Vendi score) of images and captions" }),
          barChart({ groups, series: ["vendi_image", "vendi_caption"], y: [0, top * 1.05], yLabel: "Vendi score",
                     value: (g, s) => find(g)?.[s] }),
          legend(["images", "captions"]),
          element("p", { class: "note", text: "Vendi score: the effective number of distinct items (1 = all alike)." }));
      }
      page.append(section);
    });
  }

  // ---- registration (called by the data files) --------------------------------------------------
  function registerIndex(index) {
    state.index = index;
    try {
      renderGallery();
      renderLeaderboard();
      renderGeo();
      renderCaptions();
      renderFailures();
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
    b85decode, formatScore, formatPointing, upsample, slotMap, massRegion, imageHash,
  };
})();
window.encoderlens = encoderlens;
