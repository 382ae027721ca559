// The lesson page's interactions.  Data: the JSON block #lesson-data, written
// by fastnn.lesson.page; figures: Bokeh models found by name.
(function () {
  "use strict";
  const D = JSON.parse(document.getElementById("lesson-data").textContent);
  const lesson = { ready: false, data: D, state: {} };
  window.lesson = lesson;
  const $ = (id) => document.getElementById(id);
  const nums = (a) => a.map((v) => (v === null ? NaN : v));
  let doc = null;
  const model = (name) => {
    const m = doc.get_model_by_name(name);
    if (m === null) throw new Error("no Bokeh model named " + name);
    return m;
  };

  // -- fastnn's counter-based generator (fastnn/_cpu/rng.py), ported exactly:
  // key = mix64(seed + GOLDEN); (a, b) = halves of mix64(key) for the first
  // 2**32 elements; u(l) = hash32(hash32(l + a) ^ b); keep iff u >= round(p 2**32).
  const M64 = (1n << 64n) - 1n;
  function mix64(z) {
    z = ((z ^ (z >> 30n)) * 0xBF58476D1CE4E5B9n) & M64;
    z = ((z ^ (z >> 27n)) * 0x94D049BB133111EBn) & M64;
    return z ^ (z >> 31n);
  }
  function hash32(x) {
    x = (x ^ (x >>> 16)) >>> 0;
    x = Math.imul(x, 0x7FEB352D) >>> 0;
    x = (x ^ (x >>> 15)) >>> 0;
    x = Math.imul(x, 0x846CA68B) >>> 0;
    return (x ^ (x >>> 16)) >>> 0;
  }
  function dropoutMask(n, p, seed) {
    const key = mix64((BigInt(seed) + 0x9E3779B97F4A7C15n) & M64);
    const z = mix64(key);
    const a = Number(z & 0xFFFFFFFFn), b = Number(z >> 32n);
    const threshold = Math.round(p * 4294967296);
    const keep = [];
    for (let l = 0; l < n; l++) keep.push(hash32((hash32((l + a) >>> 0) ^ b) >>> 0) >= threshold);
    return keep;
  }
  lesson.dropoutMask = dropoutMask;

  // -- 3. initialization: "Forward Pass" steps the chosen init to its next pass
  function showInit(key) {
    const I = D.init, k = lesson.state.init.pass[key], pass = I.passes[key][k];
    pass.forEach((layer, j) => {
      const color = I.colors[layer.verdict];
      model(`init-src-${key}-${j}`).data = {
        left: layer.left, right: layer.right, top: layer.top,
        color: layer.left.map(() => color) };
      const fig = model(`init-fig-${key}-${j}`);
      fig.title.text = layer.title;
      fig.title.text_color = color;
      fig.x_range.start = 0;
      fig.x_range.end = layer.right[layer.right.length - 1];
    });
    const label = I.labels[I.keys.indexOf(key)];
    $("init-value").textContent = `${label}: pass ${k + 1} of ${I.passes[key].length}`;
  }
  function bindInit() {
    const pass = {};
    D.init.keys.forEach((k) => { pass[k] = 0; });
    lesson.state.init = { pass };
    const scheme = () => document.querySelector('input[name="init-scheme"]:checked').value;
    // The chosen init's row label in bold blue, so a press visibly belongs to it.
    const mark = () => D.init.keys.forEach((key) => {
      const axis = model(`init-fig-${key}-0`).left[0], on = key === scheme();
      axis.axis_label_text_font_style = on ? "bold" : "italic";
      axis.axis_label_text_color = on ? "#1f77b4" : "#444444";
    });
    document.querySelectorAll('input[name="init-scheme"]').forEach((el) => {
      el.addEventListener("change", mark);
    });
    mark();
    $("init-forward").addEventListener("click", () => {
      const key = scheme(), n = D.init.passes[key].length;
      pass[key] = (pass[key] + 1) % n;
      showInit(key);
    });
  }

  // -- 4. batch norm: the epoch slider
  function bindBatchnorm() {
    const B = D.batchnorm, names = { plain: "without batch norm", batchnorm: "with batch norm" };
    const show = (e) => {
      for (const k of ["plain", "batchnorm"]) {
        model(`bn-src-${k}`).data = { left: B.left, right: B.right, top: B[k][e] };
        model(`bn-fig-${k}`).title.text = `${names[k]}: epoch ${e}, mean ` +
          `${B[k + "_mean"][e] >= 0 ? "+" : ""}${B[k + "_mean"][e].toFixed(2)}, ` +
          `std ${B[k + "_std"][e].toFixed(2)}`;
      }
      model("bn-epoch-span").location = e;
      $("bn-value").textContent = `epoch ${e} of ${B.epochs}`;
      lesson.state.bn = { epoch: e };
    };
    $("bn-slider").addEventListener("input", (ev) => show(Number(ev.target.value)));
    show(0);
  }

  // -- 5. L2: the lambda slider
  function bindL2() {
    const L = D.l2;
    const show = (k) => {
      model("l2-fit-src").data = { x: model("l2-fit-src").data.x, y: L.curves[k] };
      const ep = L.train_loss_curves[k].map((_, i) => i + 1);
      model("l2-curves-src").data = { epoch: ep, train: L.train_loss_curves[k],
                                      val: L.val_loss_curves[k] };
      const mark = model("l2-mark-src");
      mark.data = { x: [k, k], y: [L.train_loss[k], L.val_loss[k]], c: mark.data.c };
      $("l2-value").textContent = `lambda = ${L.lambdas[k]}: train MSE ` +
        `${L.train_loss[k].toFixed(3)}, validation MSE ${L.val_loss[k].toFixed(3)}, ` +
        `sum w^2 ${L.weight_sq_norm[k].toPrecision(3)}`;
      lesson.state.l2 = { index: k };
    };
    $("l2-slider").addEventListener("input", (ev) => show(Number(ev.target.value)));
    show(Number($("l2-slider").value));
  }

  // -- 6. dropout: "Drop" draws the next seed's mask over the hidden neurons
  function showDropout() {
    const S = D.dropout, st = lesson.state.dropout, sizes = S.sizes;
    const p = S.p_values[Number($("drop-slider").value)];
    st.p = p;
    $("drop-value").textContent = `p = ${p}`;
    if (st.seed === null) return;
    const hidden = sizes.slice(1, -1), n = hidden.reduce((a, b) => a + b, 0);
    const keep = dropoutMask(n, p, st.seed);
    st.keep = keep;
    const nodes = model("drop-nodes-src"), d = nodes.data, last = sizes.length - 1;
    const offsets = [0];
    hidden.forEach((w) => offsets.push(offsets[offsets.length - 1] + w));
    const kept = (i) => (d.layer[i] === 0 || d.layer[i] === last) ? true
      : keep[offsets[d.layer[i] - 1] + d.unit[i]];
    // Array.from: Bokeh hands numeric columns over as typed arrays, whose map()
    // would coerce the colour strings to numbers.
    const fill = Array.from(d.x, (_, i) => (d.layer[i] === 0 || d.layer[i] === last) ? "#444444"
      : (kept(i) ? S.keep_color : S.drop_color));
    nodes.data = Object.assign({}, d, { fill });
    const e = model("drop-edges-src"), ed = e.data, at = {};
    d.x.forEach((x, i) => { at[`${x},${d.y[i]}`] = kept(i); });
    const alpha = Array.from(ed.x0, (x0, i) => (at[`${x0},${ed.y0[i]}`] && at[`${ed.x1[i]},${ed.y1[i]}`])
      ? 0.5 : 0.05);
    e.data = Object.assign({}, ed, { alpha });
    const dropped = keep.filter((k) => !k).length;
    model("drop-fig").title.text =
      `seed ${st.seed}, p = ${p}: ${dropped} of ${n} hidden neurons dropped (grey)`;
    $("drop-seed").textContent = `seed ${st.seed}: mask = fastnn.functional.dropout_mask(` +
      `(${hidden.length}, ${hidden[0]}), p=${p}, seed=${st.seed})`;
  }
  function bindDropout() {
    lesson.state.dropout = { seed: null, p: null, keep: null };
    $("drop-button").addEventListener("click", () => {
      const st = lesson.state.dropout;
      st.seed = st.seed === null ? 0 : st.seed + 1;
      showDropout();
    });
    $("drop-slider").addEventListener("input", showDropout);
    showDropout();
  }

  // -- 7. losses: the correct-class score slider
  function bindLosses() {
    const L = D.losses;
    const show = (k) => {
      const s = L.score[k];
      model("loss-span").location = s;
      const mark = model("loss-mark-src");
      mark.data = { x: L.keys.map(() => s), y: L.keys.map((key) => L[key][k]), c: mark.data.c };
      L.keys.forEach((key) => { $(`loss-value-${key}`).textContent = L[key][k].toFixed(3); });
      $("loss-value").textContent = `score = ${s >= 0 ? "+" : ""}${s.toFixed(2)}`;
      lesson.state.losses = { index: k };
    };
    $("loss-slider").addEventListener("input", (ev) => show(Number(ev.target.value)));
    show(Number($("loss-slider").value));
  }

  // -- 8. learning rate: the rate slider
  function bindLr() {
    const R = D.lr.runs;
    const show = (k) => {
      const r = R[k];
      model("lr-src").data = { x: r.x, y: nums(r.y) };
      const how = r.diverged ? `diverged at epoch ${r.diverged[0]}, step ${r.diverged[1]}`
        : `final validation accuracy ${(100 * r.val_accuracy).toFixed(1)}%`;
      $("lr-value").textContent = `lr = ${r.lr}: ${how}`;
      lesson.state.lr = { index: k };
    };
    $("lr-slider").addEventListener("input", (ev) => show(Number(ev.target.value)));
    show(Number($("lr-slider").value));
  }

  function start() {
    const docs = (window.Bokeh && window.Bokeh.documents) || [];
    if (!docs.length || docs[0].get_model_by_name("init-src-he-0") === null) {
      window.setTimeout(start, 50);
      return;
    }
    doc = docs[0];
    bindInit();
    bindBatchnorm();
    bindL2();
    bindDropout();
    bindLosses();
    bindLr();
    lesson.ready = true;
  }
  start();
})();
