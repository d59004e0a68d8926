// The web view: one module renders the page its path names (/, /endpoint, /anomalies)
// from the API's JSON (/v1/endpoints, /v1/baselines, /v1/anomalies, /v1/incidents).
// Every element is built with textContent, never innerHTML: names come from traces.

const TOKEN_KEY = "tla-token";
const OVERVIEW_REFRESH_MS = 15000;
const ENDPOINT_REFRESH_MS = 10000;
const ANOMALIES_POLL_MS = 3000;
const ANOMALIES_KEPT = 300;
const HOURS = [...Array(24).keys()];
const DAY_TYPES = ["weekday", "weekend"];
// Viridis (sequential, perceptually uniform, readable with the common colour-vision
// deficiencies and in greyscale), 9 stops from low to high.
const VIRIDIS = ["#440154", "#472d7b", "#3b528b", "#2c728e", "#21918c", "#28ae80",
  "#5ec962", "#addc30", "#fde725"];

// ---- DOM and formatting helpers ----

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") el.className = value;
    else if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else el.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function fmtMs(v) {
  if (v === null || v === undefined) return "—";
  if (v >= 100) return `${Math.round(v)} ms`;
  if (v >= 10) return `${v.toFixed(1)} ms`;
  return `${v.toFixed(2)} ms`;
}

function fmtAge(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  if (seconds < 90) return `${Math.round(seconds)} s ago`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min ago`;
  if (seconds < 172800) return `${Math.round(seconds / 3600)} h ago`;
  return `${Math.round(seconds / 86400)} d ago`;
}

function hourLabel(hour) {
  return `${String(hour).padStart(2, "0")}:00`;
}

function timeIn(zone, ms) {
  const opts = { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit",
    second: "2-digit", hour12: false };
  try {
    return new Intl.DateTimeFormat("en-GB", { ...opts, timeZone: zone }).format(ms);
  } catch {
    return new Intl.DateTimeFormat("en-GB", opts).format(ms);
  }
}

function endpointHref(service, endpoint) {
  return `/endpoint?${new URLSearchParams({ service, endpoint })}`;
}

function main() {
  return document.getElementById("main");
}

function show(...children) {
  main().replaceChildren(...children);
}

function every(ms, fn) {
  // Polls while the tab is visible; a failed poll is retried on the next tick.
  setInterval(() => { if (!document.hidden) fn().catch(reportError); }, ms);
}

function reportError(e) {
  const box = document.getElementById("status-error");
  if (box) box.textContent = e.message;
  console.error(e);
}

// ---- the API, with the bearer token asked once per tab ----

let prompting = null;

function askToken(message) {
  if (prompting) return prompting;
  const dialog = document.getElementById("token-dialog");
  const form = document.getElementById("token-form");
  const input = document.getElementById("token-input");
  document.getElementById("token-error").textContent = message;
  prompting = new Promise((resolve) => {
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      sessionStorage.setItem(TOKEN_KEY, input.value.trim());
      input.value = "";
      dialog.close();
      prompting = null;
      resolve();
    }, { once: true });
  });
  dialog.showModal();
  input.focus();
  return prompting;
}

export class HttpError extends Error {
  constructor(status, body) {
    super(body && body.error ? `${status}: ${body.error}` : `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

async function api(path, options = {}) {
  for (;;) {
    const token = sessionStorage.getItem(TOKEN_KEY);
    const headers = { Accept: "application/json", ...(options.headers || {}) };
    if (token) headers.Authorization = `Bearer ${token}`;
    const response = await fetch(path, { ...options, headers });
    if (response.status === 401) {
      await askToken(token ? "That token was refused; try again." : "");
      continue;
    }
    const body = await response.json().catch(() => null);
    if (!response.ok) throw new HttpError(response.status, body);
    return body;
  }
}

// Open incidents, when this API has them (GET /v1/incidents); none when it does not.
async function openIncidents() {
  try {
    const body = await api("/v1/incidents?state=open");
    return Array.isArray(body && body.incidents) ? body.incidents : [];
  } catch {
    return [];
  }
}

// ---- overview ----

function incidentsSection(incidents, zone) {
  if (!incidents.length) return null;
  return h("section", { class: "incidents", "aria-labelledby": "incidents-title" },
    h("h2", { id: "incidents-title" }, `Open incidents (${incidents.length})`),
    h("ul", {}, incidents.map((i) => h("li", {},
      h("a", { href: endpointHref(i.service, i.endpoint) }, `${i.service} ${i.endpoint}`),
      ` since ${timeIn(zone, i.startedMs)}`, i.reason ? ` — ${i.reason}` : ""))));
}

function endpointRow(e, minSamples) {
  const b = e.baseline;
  const thin = b && b.count < minSamples;
  return h("tr", { "data-service": e.service, "data-endpoint": e.endpoint },
    h("th", { scope: "row", class: "wide" }, h("a", { href: endpointHref(e.service, e.endpoint) }, e.endpoint)),
    h("td", { class: "num", "data-label": "p50" }, b ? fmtMs(b.p50) : "—"),
    h("td", { class: "num", "data-label": "p95" }, b ? fmtMs(b.p95) : "—"),
    h("td", { class: thin ? "num thin-text" : "num", "data-label": "Samples" }, b ? String(b.count) : "0",
      thin ? h("span", { class: "sr" }, " (too few samples)") : null),
    h("td", { "data-label": "Updated" }, b ? fmtAge(b.ageS) : "not learned yet"),
    h("td", { class: e.anomaliesLastHour ? "num hot" : "num", "data-label": "Anomalies (1 h)" },
      String(e.anomaliesLastHour)));
}

function serviceSection(service, rows, data) {
  const id = `svc-${service.replace(/[^A-Za-z0-9_-]/g, "_")}`;
  return h("section", { class: "service", "data-service": service, "aria-labelledby": id },
    h("h2", { id }, service),
    h("div", { class: "scroll" }, h("table", { class: "stack" },
      h("caption", { class: "sr" }, `Endpoints of ${service}, ${hourLabel(data.hour)} ${data.dayType}`),
      h("thead", {}, h("tr", {},
        h("th", { scope: "col" }, "Endpoint"), h("th", { scope: "col", class: "num" }, "p50"),
        h("th", { scope: "col", class: "num" }, "p95"), h("th", { scope: "col", class: "num" }, "Samples"),
        h("th", { scope: "col" }, "Updated"),
        h("th", { scope: "col", class: "num" }, "Anomalies (1 h)"))),
      h("tbody", {}, rows.map((e) => endpointRow(e, data.minSamples))))));
}

function renderEndpoints(list, data, query) {
  const q = query.trim().toLowerCase();
  const shown = data.endpoints.filter((e) => !q
    || `${e.service} ${e.endpoint}`.toLowerCase().includes(q));
  const byService = new Map();
  for (const e of shown) {
    if (!byService.has(e.service)) byService.set(e.service, []);
    byService.get(e.service).push(e);
  }
  const sections = [...byService].map(([service, rows]) => serviceSection(service, rows, data));
  if (!data.endpoints.length) {
    sections.push(h("p", {}, "No endpoints tracked yet: traces have not arrived."));
  } else if (!shown.length) {
    sections.push(h("p", {}, `No endpoint matches “${query}”.`));
  }
  if (data.truncated) sections.push(h("p", { class: "muted" }, "More endpoints exist than one page lists."));
  list.replaceChildren(...sections);
  document.getElementById("match-count").textContent =
    `${shown.length} of ${data.endpoints.length} endpoints`;
}

async function overview() {
  document.title = "Overview · tempo-latency-anomaly";
  const [data, incidents] = await Promise.all([api("/v1/endpoints"), openIncidents()]);
  const search = h("input", { id: "search", type: "search", autocomplete: "off",
    placeholder: "service or endpoint", "aria-controls": "endpoint-list" });
  const list = h("div", { id: "endpoint-list" });
  const incidentsBox = h("div", { id: "incidents" });
  let current = data;
  search.addEventListener("input", () => renderEndpoints(list, current, search.value));
  show(
    h("h1", {}, "What the baselines say now"),
    h("p", { class: "muted" }, `Current bucket: ${hourLabel(data.hour)} ${data.dayType}, ${data.timezone}. `,
      `A bucket judges once it holds ${data.minSamples} samples.`),
    incidentsBox,
    h("div", { class: "search" }, h("label", { for: "search" }, "Filter endpoints"), search,
      h("span", { id: "match-count", class: "muted", role: "status" })),
    h("p", { id: "status-error", class: "error", role: "alert" }),
    list);
  incidentsBox.replaceChildren(incidentsSection(incidents, data.timezone) || "");
  renderEndpoints(list, data, "");
  every(OVERVIEW_REFRESH_MS, async () => {
    if (list.contains(document.activeElement)) return; // never pull focus from under a reader
    const [fresh, open] = await Promise.all([api("/v1/endpoints"), openIncidents()]);
    current = fresh;
    incidentsBox.replaceChildren(incidentsSection(open, fresh.timezone) || "");
    renderEndpoints(list, fresh, search.value);
  });
}

// ---- the endpoint page: heatmap, anomalies, check form ----

function colourOf(t) {
  const x = Math.min(1, Math.max(0, t)) * (VIRIDIS.length - 1);
  const i = Math.min(VIRIDIS.length - 2, Math.floor(x));
  const [a, b] = [VIRIDIS[i], VIRIDIS[i + 1]].map((c) => [1, 3, 5].map((k) => parseInt(c.slice(k, k + 2), 16)));
  const rgb = a.map((v, k) => Math.round(v + (b[k] - v) * (x - i)));
  return { bg: `rgb(${rgb.join(",")})`, fg: x > 4.5 ? "#000" : "#fff" };
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

class Heatmap {
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

function legend(range) {
  if (!range.any) return h("p", { class: "muted" }, "No bucket has enough samples to colour yet.");
  return h("div", { class: "legend" },
    h("span", {}, fmtMs(range.low)), h("span", { class: "ramp", "aria-hidden": "true" }),
    h("span", {}, fmtMs(range.high)),
    h("span", { class: "swatch thin", "aria-hidden": "true" }), h("span", {}, "too few samples"),
    h("span", { class: "swatch now-swatch", "aria-hidden": "true" }), h("span", {}, "now"));
}

function detailOf(cell, minSamples) {
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

function anomalyRows(anomalies, zone, withEndpoint) {
  return anomalies.map((a) => h("tr", { "data-id": a.id, "data-trace-id": a.traceId },
    h("td", { "data-label": "Flagged" }, timeIn(zone, a.flaggedMs)),
    withEndpoint ? h("td", { "data-label": "Endpoint" },
      h("a", { href: endpointHref(a.service, a.endpoint) }, `${a.service} ${a.endpoint}`)) : null,
    h("td", { class: "num", "data-label": "Duration" }, fmtMs(a.durationMs)),
    h("td", { class: "num", "data-label": "Threshold" }, fmtMs(a.thresholdMs)),
    h("td", { class: "reason wide", "data-label": "Reason" }, a.reason),
    h("td", { class: "wide", "data-label": "Trace" }, a.traceUrl
      ? h("a", { href: a.traceUrl, target: "_blank", rel: "noopener noreferrer", class: "trace" }, a.traceId)
      : h("code", { class: "trace" }, a.traceId))));
}

function anomalyTable(id, caption, withEndpoint) {
  const body = h("tbody", { id });
  const cols = ["Flagged", ...(withEndpoint ? ["Endpoint"] : []), "Duration", "Threshold", "Reason", "Trace"];
  return { body, table: h("div", { class: "scroll" }, h("table", { class: "anomalies stack" },
    h("caption", { class: "sr" }, caption),
    h("thead", {}, h("tr", {}, cols.map((c) => h("th", { scope: "col", class: ["Duration", "Threshold"].includes(c) ? "num" : null }, c)))),
    body)) };
}

function checkForm(service, endpoint) {
  const input = h("input", { id: "check-ms", type: "number", min: 0, step: "any", required: true, inputmode: "decimal" });
  const out = h("output", { id: "check-result", for: "check-ms", role: "status" });
  const form = h("form", { id: "check-form", class: "check" },
    h("label", { for: "check-ms" }, "Duration (ms)"), input,
    h("button", { type: "submit" }, "Check"), out);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    out.textContent = "…";
    out.className = "";
    try {
      const verdict = await api("/v1/anomaly/check", {
        method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ rootServiceName: service, rootTraceName: endpoint,
          startTimeUnixNano: String(BigInt(Date.now()) * 1000000n), durationMs: Number(input.value) }) });
      out.className = verdict.isAnomaly ? "verdict anomaly" : "verdict";
      out.replaceChildren(h("strong", {}, verdict.isAnomaly ? "Anomalous" : verdict.status.replace("_", " ")),
        ": ", verdict.reason);
    } catch (e) {
      out.className = "error";
      out.textContent = e.message;
    }
  });
  return form;
}

async function endpointPage() {
  const params = new URLSearchParams(location.search);
  const service = params.get("service");
  const endpoint = params.get("endpoint");
  if (!service || !endpoint) {
    show(h("h1", {}, "Which endpoint?"), h("p", {}, "Pick one on the ", h("a", { href: "/" }, "overview"), "."));
    return;
  }
  document.title = `${service} ${endpoint} · tempo-latency-anomaly`;
  const query = new URLSearchParams({ service, endpoint });
  const [data, recent] = await Promise.all([api(`/v1/baselines?${query}`),
    api(`/v1/anomalies?${query}&limit=50`)]);
  const detail = h("dl", { id: "cell-detail", class: "detail", "aria-live": "polite" });
  const heatmap = new Heatmap((cell) => detail.replaceChildren(...detailOf(cell, data.minSamples)));
  heatmap.focus = { hour: data.hour, dayType: data.dayType };
  const legendBox = h("div", {}, legend(heatmap.paint(data)));
  const { body, table } = anomalyTable("endpoint-anomalies", `Recent anomalies of ${service} ${endpoint}`, false);
  const none = h("p", { class: "muted" });
  const fill = (list) => {
    body.replaceChildren(...anomalyRows(list.anomalies, data.timezone, false));
    none.textContent = list.anomalies.length ? "" : "None flagged recently.";
  };
  fill(recent);
  show(
    h("p", { class: "crumbs" }, h("a", { href: "/" }, "Overview"), " › ", service),
    h("h1", {}, endpoint),
    h("p", { id: "status-error", class: "error", role: "alert" }),
    h("section", { "aria-labelledby": "hm-title" },
      h("h2", { id: "hm-title" }, `p95 by hour of day (${data.timezone})`),
      h("p", { class: "muted" }, "Each cell is one bucket; hover or focus it for p50, MAD, samples and its threshold. ",
        "Rule: anomalous when slower than max(factor × p95, p50 + k × MAD)."),
      h("div", { class: "scroll" }, heatmap.el), legendBox, detail),
    h("section", { "aria-labelledby": "check-title" },
      h("h2", { id: "check-title" }, "Would this duration be anomalous now?"), checkForm(service, endpoint)),
    h("section", { "aria-labelledby": "recent-title" },
      h("h2", { id: "recent-title" }, "Recent anomalies"), table, none));
  detail.replaceChildren(...detailOf(heatmap.data(data.hour, data.dayType), data.minSamples));
  every(ENDPOINT_REFRESH_MS, async () => {
    const [fresh, list] = await Promise.all([api(`/v1/baselines?${query}`),
      api(`/v1/anomalies?${query}&limit=50`)]);
    legendBox.replaceChildren(legend(heatmap.paint(fresh)));
    fill(list);
  });
}

// ---- recent anomalies, across services, live ----

async function anomaliesPage() {
  document.title = "Recent anomalies · tempo-latency-anomaly";
  const params = new URLSearchParams(location.search);
  const catalogue = await api("/v1/endpoints");
  const services = [...new Set(catalogue.endpoints.map((e) => e.service))].sort();
  const chosen = params.get("service") || "";
  if (chosen && !services.includes(chosen)) services.push(chosen);
  const select = h("select", { id: "service-filter" },
    h("option", { value: "" }, "all services"),
    services.map((s) => h("option", { value: s, selected: s === chosen }, s)));
  const { body, table } = anomalyTable("recent-anomalies", "Recent anomalies, newest first", true);
  const live = h("p", { id: "live", class: "muted", role: "status" });
  const zone = catalogue.timezone;
  let kept = [];
  let newestMs = 0;

  const load = async (reset) => {
    const service = select.value;
    const q = new URLSearchParams({ limit: "100" });
    if (service) q.set("service", service);
    if (!reset) q.set("since", String(newestMs));
    const { anomalies } = await api(`/v1/anomalies?${q}`);
    if (service !== select.value) return; // the filter changed meanwhile
    const known = new Set(kept.map((a) => a.id));
    const fresh = anomalies.filter((a) => !known.has(a.id));
    kept = (reset ? anomalies : [...fresh, ...kept]).slice(0, ANOMALIES_KEPT);
    newestMs = kept.length ? kept[0].flaggedMs : newestMs;
    body.replaceChildren(...anomalyRows(kept, zone, true));
    for (const row of [...body.rows].slice(0, reset ? 0 : fresh.length)) row.classList.add("fresh");
    live.textContent = reset
      ? `${kept.length} shown; new ones appear at the top as they are flagged.`
      : fresh.length ? `${fresh.length} new anomal${fresh.length === 1 ? "y" : "ies"}.` : live.textContent;
  };
  select.addEventListener("change", () => {
    const url = new URL(location.href);
    if (select.value) url.searchParams.set("service", select.value); else url.searchParams.delete("service");
    history.replaceState(null, "", url);
    kept = [];
    newestMs = 0;
    load(true).catch(reportError);
  });
  show(
    h("h1", {}, "Recent anomalies"),
    h("div", { class: "search" }, h("label", { for: "service-filter" }, "Service"), select, live),
    h("p", { id: "status-error", class: "error", role: "alert" }),
    table);
  await load(true);
  every(ANOMALIES_POLL_MS, () => load(false));
}

// ---- start ----

const PAGES = { "/": overview, "/endpoint": endpointPage, "/anomalies": anomaliesPage };

async function start() {
  const page = PAGES[location.pathname] || overview;
  const name = page === anomaliesPage ? "anomalies" : page === overview ? "overview" : "";
  for (const link of document.querySelectorAll("nav a")) {
    if (link.dataset.page === name) link.setAttribute("aria-current", "page");
  }
  try {
    await page();
  } catch (e) {
    show(h("h1", {}, "Could not load this page"), h("p", { class: "error", role: "alert" }, e.message),
      h("p", {}, h("a", { href: location.href }, "Try again")));
  }
}

start();
