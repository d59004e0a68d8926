// The pages' shared core: building DOM, formatting numbers and times, polling, and the
// API with its bearer token, asked once per tab and kept in sessionStorage.
// Every element is built with textContent, never innerHTML: names come from traces.

const TOKEN_KEY = "tla-token";
export const HOURS = [...Array(24).keys()];
export const DAY_TYPES = ["weekday", "weekend"];

// ---- DOM and formatting helpers ----

export function h(tag, attrs = {}, ...children) {
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

export function fmtAge(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  seconds = Math.max(0, seconds); // the browser's clock may run a little behind Redis's
  if (seconds < 90) return `${Math.round(seconds)} s ago`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min ago`;
  if (seconds < 172800) return `${Math.round(seconds / 3600)} h ago`;
  return `${Math.round(seconds / 86400)} d ago`;
}

export function hourLabel(hour) {
  return `${String(hour).padStart(2, "0")}:00`;
}

export function timeIn(zone, ms) {
  const opts = { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit",
    second: "2-digit", hour12: false };
  try {
    return new Intl.DateTimeFormat("en-GB", { ...opts, timeZone: zone }).format(ms);
  } catch {
    return new Intl.DateTimeFormat("en-GB", opts).format(ms);
  }
}

export function endpointHref(service, endpoint) {
  return `/endpoint?${new URLSearchParams({ service, endpoint })}`;
}

function main() {
  return document.getElementById("main");
}

export function show(...children) {
  main().replaceChildren(...children);
}

export function every(ms, fn) {
  // Polls while the tab is visible; a failed poll is retried on the next tick.
  setInterval(() => { if (!document.hidden) fn().catch(reportError); }, ms);
}

export function reportError(e) {
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
  // Escape would close the dialog and leave the page waiting on nothing: keep asking.
  dialog.oncancel = (ev) => ev.preventDefault();
  dialog.onclose = () => { if (prompting) dialog.showModal(); };
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

export async function api(path, options = {}) {
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
export async function openIncidents() {
  try {
    const body = await api("/v1/incidents?state=open");
    return Array.isArray(body && body.incidents) ? body.incidents : [];
  } catch {
    return [];
  }
}
