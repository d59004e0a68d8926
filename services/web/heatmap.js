// The endpoint page's heatmap: 24 hours x weekday/weekend of p95, coloured on the viridis
// scale, one tab stop walked with the arrow keys; and the numbers of the picked cell.

import { DAY_TYPES, HOURS, fmtAge, fmtMs, h, hourLabel } from "./ui.js";

// Viridis (sequential, perceptually uniform, readable with the common colour-vision
// deficiencies and in greyscale), 9 stops from low to high.
const VIRIDIS = ["#440154", "#472d7b", "#3b528b", "#2c728e", "#21918c", "#28ae80",
  "#5ec962", "#addc30", "#fde725"];
// Below this stop the colour is dark: white text on it.
const DARK_BELOW = 4.5;

function colourOf(t) {
  const x = Math.min(1, Math.max(0, t)) * (VIRIDIS.length - 1);
  const i = Math.min(VIRIDIS.length - 2, Math.floor(x));
  const [a, b] = [VIRIDIS[i], VIRIDIS[i + 1]].map((c) => [1, 3, 5].map((k) => parseInt(c.slice(k, k + 2), 16)));
  const rgb = a.map((v, k) => Math.round(v + (b[k] - v) * (x - i)));
  return { bg: `rgb(${rgb.join(",")})`, fg: x > DARK_BELOW ? "#000" : "#fff" };
}

function cellText(cell, minSamples) {
  const b = cell.baseline;
  const where = `${hourLabel(cell.hour)} ${cell.dayType}`;
  if (!b) return { short: "—", long: `${where}: nothing learned yet` };
  const numbers = `p95 ${fmtMs(b.p95)}, p50 ${fmtMs(b.p50)}, MAD ${fmtMs(b.mad)}, ${b.count} samples`;
  const threshold = cell.threshold ? `threshold ${fmtMs(cell.threshold.valueMs)} (${cell.threshold.term})` : "";
  if (!cell.enoughSamples) {
    return { short: `n=${b.count}`, long: `${where}: too few samples (${b.count} < ${minSamples}) to judge; ${numbers}` };
  }
  const short = b.p95 >= 10 ? String(Math.round(b.p95)) : b.p95.toFixed(1);
  return { short, long: `${where}: ${numbers}, ${threshold}, updated ${fmtAge(b.ageS)}` };
}

export class Heatmap {
  constructor(onPick) {
    this.cells = new Map();
    this.onPick = onPick;
    this.focus = { hour: 0, dayType: "weekday" };
    const rows = [h("div", { role: "row", class: "hm-row" },
      h("span", { role: "columnheader", class: "hm-corner" }, "hour"),
      HOURS.map((hour) => this.place(h("span", { role: "columnheader", class: "hm-col" }, String(hour).padStart(2, "0")), hour, 0)))];
    for (const [d, dayType] of DAY_TYPES.entries()) {
      const cells = HOURS.map((hour) => {
        const el = this.place(h("button", { type: "button", role: "gridcell", class: "cell", tabindex: -1,
          "data-hour": hour, "data-day-type": dayType }), hour, d);
        el.addEventListener("focus", () => this.pick(hour, dayType));
        el.addEventListener("mouseenter", () => this.onPick(this.data(hour, dayType)));
        el.addEventListener("click", () => this.pick(hour, dayType));
        this.cells.set(`${hour}:${dayType}`, el);
        return el;
      });
      rows.push(h("div", { role: "row", class: "hm-row" },
        this.place(h("span", { role: "rowheader", class: "hm-rowhead" }, dayType), -1, d), cells));
    }
    this.el = h("div", { class: "heatmap", role: "grid", "aria-label": "p95 per hour and day type; arrow keys move" }, rows);
    this.el.addEventListener("keydown", (ev) => this.key(ev));
  }

  place(el, hour, d) {
    el.style.setProperty("--h", String(hour + 1));
    el.style.setProperty("--d", String(d + 1));
    return el;
  }

  data(hour, dayType) {
    return this.buckets.find((c) => c.hour === hour && c.dayType === dayType);
  }

  pick(hour, dayType) {
    for (const el of this.cells.values()) el.tabIndex = -1;
    this.focus = { hour, dayType };
    this.cells.get(`${hour}:${dayType}`).tabIndex = 0;
    this.onPick(this.data(hour, dayType));
  }

  key(ev) {
    const transposed = window.matchMedia("(max-width: 700px)").matches;
    let { hour, dayType } = this.focus;
    let d = DAY_TYPES.indexOf(dayType);
    const moves = transposed
      ? { ArrowUp: [-1, 0], ArrowDown: [1, 0], ArrowLeft: [0, -1], ArrowRight: [0, 1] }
      : { ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1] };
    if (ev.key === "Home") hour = 0;
    else if (ev.key === "End") hour = 23;
    else if (moves[ev.key]) {
      hour = Math.min(23, Math.max(0, hour + moves[ev.key][0]));
      d = Math.min(1, Math.max(0, d + moves[ev.key][1]));
    } else return;
    ev.preventDefault();
    this.cells.get(`${hour}:${DAY_TYPES[d]}`).focus();
  }

  paint(data) {
    this.buckets = data.buckets;
    const judged = data.buckets.filter((c) => c.baseline && c.enoughSamples).map((c) => c.baseline.p95);
    const [low, high] = judged.length ? [Math.min(...judged), Math.max(...judged)] : [0, 1];
    for (const cell of data.buckets) {
      const el = this.cells.get(`${cell.hour}:${cell.dayType}`);
      const text = cellText(cell, data.minSamples);
      el.textContent = text.short;
      el.title = text.long;
      el.setAttribute("aria-label", text.long);
      el.classList.toggle("now", cell.hour === data.hour && cell.dayType === data.dayType);
      el.classList.toggle("thin", Boolean(cell.baseline) && !cell.enoughSamples);
      el.classList.toggle("empty", !cell.baseline);
      if (cell.baseline && cell.enoughSamples) {
        const { bg, fg } = colourOf(high > low ? (cell.baseline.p95 - low) / (high - low) : 0.5);
        el.style.setProperty("background-color", bg);
        el.style.setProperty("color", fg);
      } else {
        el.style.removeProperty("background-color");
        el.style.removeProperty("color");
      }
    }
    this.cells.get(`${this.focus.hour}:${this.focus.dayType}`).tabIndex = 0;
    return { low, high, any: judged.length > 0 };
  }
}

export function legend(range) {
  if (!range.any) return h("p", { class: "muted" }, "No bucket has enough samples to colour yet.");
  return h("div", { class: "legend" },
    h("span", {}, fmtMs(range.low)), h("span", { class: "ramp", "aria-hidden": "true" }),
    h("span", {}, fmtMs(range.high)),
    h("span", { class: "swatch thin", "aria-hidden": "true" }), h("span", {}, "too few samples"),
    h("span", { class: "swatch now-swatch", "aria-hidden": "true" }), h("span", {}, "now"));
}

export function detailOf(cell, minSamples) {
  if (!cell) return [];
  const b = cell.baseline;
  const rows = [["bucket", `${hourLabel(cell.hour)} ${cell.dayType}`]];
  if (!b) return [...rows, ["baseline", "nothing learned yet"]].map(detailRow);
  rows.push(["p50", fmtMs(b.p50)], ["p95", fmtMs(b.p95)], ["MAD", fmtMs(b.mad)],
    ["samples", cell.enoughSamples ? String(b.count) : `${b.count} (fewer than ${minSamples}: never flags)`]);
  if (cell.threshold) {
    rows.push(["threshold", `${fmtMs(cell.threshold.valueMs)} (${cell.threshold.term === "p95_factor"
      ? `${cell.threshold.factor} × p95` : cell.threshold.term === "p50_k_mad"
        ? `p50 + ${cell.threshold.k} × MAD` : "floor"})`]);
  }
  rows.push(["updated", fmtAge(b.ageS)]);
  return rows.map(detailRow);
}

function detailRow([name, value]) {
  return h("div", {}, h("dt", {}, name), h("dd", {}, value));
}
