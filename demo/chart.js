// chart.js: the fine-tuning chart. Train loss per step (faint) and its running mean (solid), and
// validation loss at each evaluation (points), on a canvas drawn at devicePixelRatio, with axes,
// tick labels, axis titles and a legend. What is drawn is mirrored in data-* attributes.

/** About `n` round tick values covering [lo, hi] (1, 2, 5 x 10^k steps). */
export function niceTicks(lo, hi, n = 5) {
  if (!(hi > lo)) hi = lo + 1;
  const raw = (hi - lo) / n;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw);
  const ticks = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) ticks.push(Number(v.toFixed(10)));
  return { ticks, step };
}

/** A canvas sized to its CSS box at devicePixelRatio; returns the 2D context in CSS pixels. */
export function fitCanvas(canvas) {
  const dpr = window.devicePixelRatio || 1;
  const { width, height } = canvas.getBoundingClientRect();
  const w = Math.max(1, Math.round(width * dpr));
  const h = Math.max(1, Math.round(height * dpr));
  if (canvas.width !== w || canvas.height !== h) {
    canvas.width = w;
    canvas.height = h;
  }
  const g = canvas.getContext('2d');
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  g.clearRect(0, 0, width, height);
  return { g, width, height };
}

const COLORS = { train: '#2962ff', trainFaint: 'rgba(41, 98, 255, 0.28)', val: '#e8590c', axis: '#5b6675', grid: '#e6eaf0', text: '#1d2430' };
const FONT = '12px system-ui, sans-serif';
const MEAN_OF = 10; // steps in the running mean of the train loss

export class LossChart {
  constructor(canvas) {
    this.canvas = canvas;
    this.train = []; // { step, loss }
    this.val = []; // { step, loss }
    this.totalSteps = 0;
    this._pending = false;
    new ResizeObserver(() => this.draw()).observe(canvas);
  }

  reset(totalSteps) {
    this.train = [];
    this.val = [];
    this.totalSteps = totalSteps;
    this.draw();
  }

  addTrain(step, loss) {
    this.train.push({ step, loss });
    this.draw();
  }

  addVal(step, loss) {
    this.val.push({ step, loss });
    this.draw();
  }

  /** Running mean of the last MEAN_OF train losses, at each step. */
  _mean() {
    let sum = 0;
    return this.train.map((p, i) => {
      sum += p.loss - (i >= MEAN_OF ? this.train[i - MEAN_OF].loss : 0);
      return { step: p.step, loss: sum / Math.min(i + 1, MEAN_OF) };
    });
  }

  /** Redraws on the next animation frame (progress events can come faster than frames). */
  draw() {
    if (this._pending) return;
    this._pending = true;
    requestAnimationFrame(() => {
      this._pending = false;
      this._draw();
    });
  }

  /** The legend, above the plot, in as many rows as the width needs: { bottom, draw() }. */
  _legend(g, width) {
    const stroke = (color, w) => (x, y) => {
      g.strokeStyle = color;
      g.lineWidth = w;
      g.beginPath();
      g.moveTo(x, y);
      g.lineTo(x + 22, y);
      g.stroke();
    };
    const dot = (x, y) => {
      stroke(COLORS.val, 1.6)(x, y);
      g.fillStyle = COLORS.val;
      g.beginPath();
      g.arc(x + 11, y, 4, 0, 2 * Math.PI);
      g.fill();
    };
    const items = [
      ['train loss (per step)', stroke(COLORS.trainFaint, 1.2)],
      [`train loss (mean of ${MEAN_OF} steps)`, stroke(COLORS.train, 2.2)],
      ['validation loss (held-out text)', dot],
    ];
    const left = 62;
    let x = left;
    let y = 14;
    const placed = items.map(([label, mark]) => {
      const w = 28 + g.measureText(label).width + 18;
      if (x + w > width - 18 && x > left) {
        x = left;
        y += 18;
      }
      const at = { label, mark, x, y };
      x += w;
      return at;
    });
    return {
      bottom: y + 8,
      draw: () => {
        g.font = FONT;
        g.textAlign = 'left';
        g.textBaseline = 'middle';
        for (const { label, mark, x: lx, y: ly } of placed) {
          mark(lx, ly);
          g.fillStyle = COLORS.text;
          g.fillText(label, lx + 28, ly);
        }
      },
    };
  }

  _draw() {
    const { g, width, height } = fitCanvas(this.canvas);
    g.font = FONT;
    const legend = this._legend(g, width);
    const m = { left: 62, right: 18, top: legend.bottom + 14, bottom: 46 }; // plot margins (CSS px)
    const pw = width - m.left - m.right;
    const ph = height - m.top - m.bottom;
    const all = [...this.train, ...this.val].map((p) => p.loss);
    const xMax = Math.max(1, this.totalSteps, ...this.train.map((p) => p.step), ...this.val.map((p) => p.step));
    // y range: the data with a margin, widened to whole tick steps
    const lo = all.length ? Math.min(...all) : 0;
    const hi = all.length ? Math.max(...all) : 10;
    const pad = Math.max(0.05, (hi - lo) * 0.06);
    const yt = niceTicks(Math.max(0, lo - pad), hi + pad, 5);
    const yLo = Math.max(0, Math.floor((lo - pad) / yt.step) * yt.step);
    const yHi = Math.ceil((hi + pad) / yt.step) * yt.step;
    const yTicks = [];
    for (let i = 0; yLo + i * yt.step <= yHi + 1e-9; i++) yTicks.push(yLo + i * yt.step);
    const xt = niceTicks(0, xMax, Math.max(2, Math.min(10, Math.floor(pw / 70))));
    const X = (st) => m.left + (st / xMax) * pw;
    const Y = (v) => m.top + ph - ((v - yLo) / (yHi - yLo)) * ph;

    // grid and tick labels
    g.font = FONT;
    g.lineWidth = 1;
    g.fillStyle = COLORS.axis;
    g.textAlign = 'right';
    g.textBaseline = 'middle';
    for (const v of yTicks) {
      g.strokeStyle = COLORS.grid;
      g.beginPath();
      g.moveTo(m.left, Math.round(Y(v)) + 0.5);
      g.lineTo(m.left + pw, Math.round(Y(v)) + 0.5);
      g.stroke();
      g.fillText(v.toFixed(yt.step < 0.1 ? 2 : 1), m.left - 6, Y(v));
    }
    g.textAlign = 'center';
    g.textBaseline = 'top';
    for (const s of xt.ticks) {
      if (s > xMax) continue;
      g.strokeStyle = COLORS.axis;
      g.beginPath();
      g.moveTo(Math.round(X(s)) + 0.5, m.top + ph);
      g.lineTo(Math.round(X(s)) + 0.5, m.top + ph + 4);
      g.stroke();
      g.fillText(String(s), X(s), m.top + ph + 6);
    }
    // axes
    g.strokeStyle = COLORS.axis;
    g.beginPath();
    g.moveTo(m.left + 0.5, m.top);
    g.lineTo(m.left + 0.5, m.top + ph + 0.5);
    g.lineTo(m.left + pw, m.top + ph + 0.5);
    g.stroke();
    // axis titles
    g.fillStyle = COLORS.text;
    g.fillText('optimizer step', m.left + pw / 2, m.top + ph + 26);
    g.save();
    g.translate(14, m.top + ph / 2);
    g.rotate(-Math.PI / 2);
    g.textBaseline = 'middle';
    g.fillText('loss (nats / token)', 0, 0);
    g.restore();

    // the data, clipped to the plot
    g.save();
    g.beginPath();
    g.rect(m.left, m.top - 6, pw + 6, ph + 6);
    g.clip();
    const line = (pts, color, w) => {
      if (pts.length < 1) return;
      g.strokeStyle = color;
      g.lineWidth = w;
      g.lineJoin = 'round';
      g.beginPath();
      pts.forEach((p, i) => (i ? g.lineTo(X(p.step), Y(p.loss)) : g.moveTo(X(p.step), Y(p.loss))));
      g.stroke();
    };
    line(this.train, COLORS.trainFaint, 1.2);
    line(this._mean(), COLORS.train, 2.2);
    line(this.val, COLORS.val, 1.6);
    g.fillStyle = COLORS.val;
    for (const p of this.val) {
      g.beginPath();
      g.arc(X(p.step), Y(p.loss), 4, 0, 2 * Math.PI);
      g.fill();
    }
    g.restore();

    legend.draw();
    if (!all.length) {
      g.fillStyle = COLORS.axis;
      g.textAlign = 'center';
      g.fillText('train an adapter to see its loss here', m.left + pw / 2, m.top + ph / 2);
    }
    // mirror for automated checks
    this.canvas.dataset.trainPoints = String(this.train.length);
    this.canvas.dataset.valPoints = String(this.val.length);
  }
}
