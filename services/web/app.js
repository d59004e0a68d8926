// The web view: renders the page its path names (/, /endpoint, /anomalies) from the API's
// JSON (/v1/endpoints, /v1/baselines, /v1/anomalies, /v1/incidents when it exists).

import { Heatmap, detailOf, legend } from "./heatmap.js";
import {
  api, endpointHref, every, fmtAge, fmtMs, h, hourLabel, openIncidents, reportError, show, timeIn,
} from "./ui.js";

const OVERVIEW_REFRESH_MS = 15000;
const ENDPOINT_REFRESH_MS = 10000;
const ANOMALIES_POLL_MS = 3000;
const ANOMALIES_KEPT = 300;

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
    h("td", { "data-label": "Baseline updated" }, b ? fmtAge(b.ageS) : "not learned yet"),
    h("td", { "data-label": "Last trace" }, fmtAge((Date.now() - e.lastSeenMs) / 1000)),
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
        h("th", { scope: "col" }, "Baseline updated"), h("th", { scope: "col" }, "Last trace"),
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
