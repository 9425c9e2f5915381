// heatmap.js: the LIM membrane as a heatmap, layer (y) x token position (x): each cell is the mean
// |v| over the layer's channels, v being what the LIM gate outputs at that token (model.inspect's
// limV). Axes with ticks and titles, a colour bar with its range, dashed lines at the LIM chunk
// boundaries, and a tooltip with layer, position, token, value and spike share on hover.
import { fitCanvas, niceTicks } from './chart.js';

// viridis (matplotlib), 9 stops: dark blue (low) -> yellow (high), readable and perceptually even
const VIRIDIS = [[68, 1, 84], [71, 44, 122], [59, 81, 139], [44, 113, 142], [33, 144, 141], [39, 173, 129], [92, 200, 99], [170, 220, 50], [253, 231, 37]];
function colour(k) {
  const x = Math.min(1, Math.max(0, k)) * (VIRIDIS.length - 1);
  const i = Math.min(VIRIDIS.length - 2, Math.floor(x));
  const f = x - i;
  const c = VIRIDIS[i].map((a, j) => Math.round(a + (VIRIDIS[i + 1][j] - a) * f));
  return `rgb(${c[0]}, ${c[1]}, ${c[2]})`;
}

const FONT = '12px system-ui, sans-serif';
const M = { left: 58, right: 104, top: 12, bottom: 46 }; // plot margins (CSS px); the colour bar sits right

/** Token text for display: visible spaces and newlines. */
const show = (s) => JSON.stringify(s.replace(/\n/g, '⏎'));

export class MembraneHeatmap {
  constructor(canvas, tooltip) {
    this.canvas = canvas;
    this.tooltip = tooltip;
    this.data = null;
    this.hover = null;
    new ResizeObserver(() => this.draw()).observe(canvas);
    canvas.addEventListener('mousemove', (e) => this._move(e));
    canvas.addEventListener('mouseleave', () => this._move(null));
  }

  /** values[l][t]: mean |v|; spikes[l][t]: share of channels that spiked; tokens[t]: text. */
  set({ values, spikes, tokens, chunkLength, channels }) {
    const max = Math.max(1e-9, ...values.flat());
    this.data = { values, spikes, tokens, chunkLength, channels, max };
    this.hover = null;
    this.tooltip.hidden = true;
    Object.assign(this.canvas.dataset, { drawn: 'true', layers: String(values.length), positions: String(tokens.length), chunkLength: String(chunkLength), max: max.toFixed(4) });
    this.draw();
  }

  clear() {
    this.data = null;
    this.tooltip.hidden = true;
    this.canvas.dataset.drawn = 'false';
    this.draw();
  }

  _geometry() {
    const { width, height } = this.canvas.getBoundingClientRect();
    const pw = width - M.left - M.right;
    const ph = height - M.top - M.bottom;
    const T = this.data?.tokens.length ?? 1;
    const nl = this.data?.values.length ?? 1;
    return { width, height, pw, ph, cw: pw / T, ch: ph / nl, T, nl };
  }

  draw() {
    const { g } = fitCanvas(this.canvas);
    const { pw, ph, cw, ch, T, nl } = this._geometry();
    g.font = FONT;
    if (!this.data) {
      g.fillStyle = '#5b6675';
      g.textAlign = 'center';
      g.textBaseline = 'middle';
      g.fillText('train or load an adapter with the LIM gate, then draw', M.left + pw / 2, M.top + ph / 2);
      return;
    }
    const { values, chunkLength, max } = this.data;
    // cells (layer 0 at the top)
    values.forEach((row, l) =>
      row.forEach((v, t) => {
        g.fillStyle = colour(v / max);
        g.fillRect(M.left + t * cw, M.top + l * ch, Math.ceil(cw) + 0.5, Math.ceil(ch) + 0.5);
      }),
    );
    // LIM chunk boundaries: a dark line under a white dashed one, visible on every colour
    for (let t = chunkLength; t < T; t += chunkLength) {
      const x = Math.round(M.left + t * cw) + 0.5;
      const line = (style, width, dash) => {
        g.setLineDash(dash);
        g.strokeStyle = style;
        g.lineWidth = width;
        g.beginPath();
        g.moveTo(x, M.top);
        g.lineTo(x, M.top + ph);
        g.stroke();
      };
      line('rgba(0, 0, 0, 0.55)', 3, []); // a dark outline, then a white dash on it: visible on any colour
      line('#fff', 1.5, [5, 3]);
    }
    g.setLineDash([]);
    // the hovered cell
    if (this.hover) {
      g.strokeStyle = '#ff1744';
      g.lineWidth = 2;
      g.strokeRect(M.left + this.hover.t * cw + 1, M.top + this.hover.l * ch + 1, cw - 2, ch - 2);
    }
    // y axis: layers
    g.fillStyle = '#5b6675';
    g.textAlign = 'right';
    g.textBaseline = 'middle';
    for (let l = 0; l < nl; l++) g.fillText(String(l), M.left - 6, M.top + (l + 0.5) * ch);
    g.save();
    g.translate(16, M.top + ph / 2);
    g.rotate(-Math.PI / 2);
    g.textAlign = 'center';
    g.fillStyle = '#1d2430';
    g.fillText('layer', 0, 0);
    g.restore();
    // x axis: token positions, ticks at cell centres
    const { ticks } = niceTicks(0, T - 1, Math.max(2, Math.min(16, Math.floor(pw / 46))));
    g.textAlign = 'center';
    g.textBaseline = 'top';
    g.strokeStyle = '#5b6675';
    g.lineWidth = 1;
    for (const t of ticks) {
      if (!Number.isInteger(t) || t > T - 1) continue;
      const x = Math.round(M.left + (t + 0.5) * cw) + 0.5;
      g.beginPath();
      g.moveTo(x, M.top + ph);
      g.lineTo(x, M.top + ph + 4);
      g.stroke();
      g.fillText(String(t), x, M.top + ph + 6);
    }
    g.fillStyle = '#1d2430';
    g.fillText(`token position (dashed: LIM chunk boundaries, every ${chunkLength} tokens)`, M.left + pw / 2, M.top + ph + 26);
    // colour bar with its range and what the value is
    const bx = M.left + pw + 14;
    const bw = 14;
    for (let i = 0; i < ph; i++) {
      g.fillStyle = colour(1 - i / ph);
      g.fillRect(bx, M.top + i, bw, 1.5);
    }
    g.strokeStyle = '#5b6675';
    g.strokeRect(bx + 0.5, M.top + 0.5, bw, ph);
    g.fillStyle = '#5b6675';
    g.textAlign = 'left';
    g.textBaseline = 'middle';
    const bt = niceTicks(0, max, 4);
    for (const v of bt.ticks) {
      if (v > max + 1e-12) continue;
      const y = M.top + ph - (v / max) * ph;
      g.fillRect(bx + bw, y - 0.5, 4, 1);
      g.fillText(v.toFixed(bt.step < 0.01 ? 3 : 2), bx + bw + 8, y);
    }
    g.save();
    g.translate(bx + bw + 54, M.top + ph / 2);
    g.rotate(-Math.PI / 2);
    g.textAlign = 'center';
    g.fillStyle = '#1d2430';
    g.fillText('mean |v| over channels', 0, 0);
    g.restore();
  }

  /** Hover: which cell is under the pointer; the tooltip next to it. */
  _move(e) {
    if (!this.data) return;
    const { pw, ph, cw, ch } = this._geometry();
    let cell = null;
    if (e) {
      const r = this.canvas.getBoundingClientRect();
      const x = e.clientX - r.left - M.left;
      const y = e.clientY - r.top - M.top;
      if (x >= 0 && y >= 0 && x < pw && y < ph) cell = { t: Math.floor(x / cw), l: Math.floor(y / ch), x: e.clientX - r.left, y: e.clientY - r.top };
    }
    const same = cell && this.hover && cell.t === this.hover.t && cell.l === this.hover.l;
    this.hover = cell;
    if (!same) this.draw();
    const tip = this.tooltip;
    if (!cell) {
      tip.hidden = true;
      return;
    }
    const { values, spikes, tokens, chunkLength, channels } = this.data;
    const v = values[cell.l][cell.t];
    const chunk = Math.floor(cell.t / chunkLength);
    tip.innerHTML = '';
    const rows = [
      ['layer', String(cell.l)],
      ['position', `${cell.t} (chunk ${chunk}, slot ${cell.t - chunk * chunkLength})`],
      ['token', show(tokens[cell.t])],
      ['mean |v|', v.toFixed(4)],
      ['spiked', `${(100 * spikes[cell.l][cell.t]).toFixed(1)}% of ${channels} channels`],
    ];
    for (const [k, val] of rows) {
      const div = document.createElement('div');
      const b = document.createElement('b');
      b.textContent = `${k} `;
      div.append(b, val);
      tip.append(div);
    }
    Object.assign(tip.dataset, { layer: String(cell.l), position: String(cell.t), value: v.toFixed(4) });
    tip.hidden = false;
    // keep the tooltip inside the canvas box: left of the pointer near the right edge
    const { width } = this.canvas.getBoundingClientRect();
    const tw = tip.offsetWidth;
    tip.style.left = `${cell.x + 14 + tw > width ? cell.x - 14 - tw : cell.x + 14}px`;
    tip.style.top = `${Math.max(0, cell.y - tip.offsetHeight - 8)}px`;
  }
}
