// The bureau dashboard: published records from GET /v1/reports/..., kept current by the
// /v1/reports/stream events. Plain ES2020 and Chart.js (vendored); no build step.
"use strict";

const LEVELS = ["county_hospital", "specialist_hospital", "township_centre", "village_clinic"];
const TILES = [
  ["admissions", "Admissions"], ["discharges", "Discharges"], ["inpatients", "Inpatients (census)"],
  ["bed_occupancy", "Bed occupancy", "percent"], ["outpatient_visits", "Outpatient visits"],
  ["average_length_of_stay_days", "Average stay (days)", "number"],
  ["referrals_up", "Referrals up"], ["referrals_down", "Referrals down"],
  ["referrals_lateral", "Referrals lateral"], ["acceptance_rate", "Acceptance rate", "percent"],
  ["acceptance_minutes_median", "Median minutes to accept", "number"],
  ["acceptance_minutes_p90", "p90 minutes to accept", "number"],
  ["referrals_overdue", "Referrals overdue"], ["referrals_completed", "Referrals completed (loop closed)"],
  ["transfers_outside", "Transferred outside"],
  ["transfers_received_unreferred", "Transfers without referral"],
  ["transfers_received_referred", "Transfers with referral"],
];
const RATIOS = [
  ["share_referrals_down", "Share of referrals going down"],
  ["share_visits_primary", "Share of visits at township and village level"],
  ["admitted_within_county", "Share admitted within the county"],
];
const COLORS = ["#1f6fb2", "#d9822b", "#2e8540", "#8e44ad", "#c0392b"];
const DAY_MS = 86400000;
const SHANGHAI_MS = 8 * 3600000;

const state = { token: null, members: null, records: new Map(), day: null, abort: null, dayReports: null, dayTimer: null };
const charts = {};
const $ = (id) => document.getElementById(id);

function keyOf(r) { return `${r.view}|${r.scope}|${r.grain}|${r.window_start}`; }
function localDayStart(day) { return new Date(Date.parse(`${day}T00:00:00+08:00`)).toISOString(); }
function localHour(windowStart) { return new Date(Date.parse(windowStart) + SHANGHAI_MS).getUTCHours(); }

// A count or figure as a chart point: suppressed and missing values are gaps, never 0.
function point(c) { return c && !c.suppressed && c.value !== null ? c.value : null; }

function show(c, kind) {
  if (!c) return { text: "–", suppressed: false };
  if (c.suppressed) return { text: "<5", suppressed: true };
  if (c.value === null) return { text: "–", suppressed: false };
  if (kind === "percent") return { text: `${(c.value * 100).toFixed(1)}%`, suppressed: false };
  if (kind === "number") return { text: Number(c.value).toFixed(1), suppressed: false };
  return { text: String(c.value), suppressed: false };
}

async function api(path) {
  const resp = await fetch(path, { headers: { Authorization: `Bearer ${state.token}` }, cache: "no-store" });
  if (resp.status === 401 || resp.status === 403) {
    const problem = await resp.json().catch(() => ({}));
    throw Object.assign(new Error(problem.detail || resp.statusText), { status: resp.status });
  }
  if (!resp.ok) throw new Error(`${path}: ${resp.status}`);
  return resp.json();
}

function put(record) {
  // The stream carries every hour of every institution; the board shows only these.
  const wanted = record.grain === "DAY" || record.view === "consortium";
  if (wanted) state.records.set(keyOf(record), record);
}

function select(view, grain, test = () => true) {
  return [...state.records.values()]
    .filter((r) => r.view === view && r.grain === grain && test(r))
    .sort((a, b) => (a.window_start < b.window_start ? -1 : a.window_start > b.window_start ? 1 : a.scope < b.scope ? -1 : 1));
}

async function loadSnapshot() {
  const days = [...state.members.days];
  const since = days.length ? localDayStart(days[Math.max(0, days.length - 31)]) : null;
  const range = since ? `&since=${encodeURIComponent(since)}` : "";
  const parts = await Promise.all([
    api(`/v1/reports/consortium?grain=DAY&limit=10000${range}`),
    api(`/v1/reports/consortium?grain=HOUR&limit=10000${range}`),
    api(`/v1/reports/levels?grain=DAY&limit=10000${range}`),
    api(`/v1/reports/institutions?grain=DAY&limit=10000${range}`),
  ]);
  for (const part of parts) part.records.forEach(put);
}

function days() {
  return select("consortium", "DAY").map((r) => r.local_date);
}

function renderDays() {
  const picker = $("day");
  const all = days();
  if (!state.day || !all.includes(state.day)) state.day = all[all.length - 1] || null;
  const current = [...picker.options].map((o) => o.value).join();
  if (current !== all.join()) {
    picker.replaceChildren(...all.map((d) => new Option(d, d)));
  }
  if (state.day) picker.value = state.day;
}

function tile(id, label, cell, kind) {
  const shown = show(cell, kind);
  const div = document.createElement("div");
  div.className = "tile";
  div.id = id;
  div.dataset.suppressed = String(shown.suppressed);
  div.innerHTML = '<div class="label"></div><div class="value"></div>';
  div.querySelector(".label").textContent = label;
  const value = div.querySelector(".value");
  value.textContent = shown.text;
  if (shown.suppressed) value.classList.add("suppressed");
  return div;
}

function renderTiles() {
  const [today] = select("consortium", "DAY", (r) => r.local_date === state.day);
  $("tiles").replaceChildren(...TILES.map(([m, label, kind]) => tile(`kpi-${m}`, label, today && today[m], kind)));
  $("ratio-tiles").replaceChildren(...RATIOS.map(([m, label]) => tile(`kpi-${m}`, label, today && today[m], "percent")));
}

function cellHtml(c) {
  const shown = show(c);
  const td = document.createElement("td");
  td.textContent = shown.text;
  if (shown.suppressed) td.className = "suppressed";
  return td;
}

function renderLevels() {
  const byLevel = new Map(select("levels", "DAY", (r) => r.local_date === state.day).map((r) => [r.scope, r]));
  const rows = state.members.levels.map((level) => {
    const tr = document.createElement("tr");
    tr.dataset.level = level.level;
    const r = byLevel.get(level.level) || {};
    const beds = level.members.reduce((n, m) => n + m.beds, 0);
    const name = document.createElement("td");
    name.textContent = level.level.replace("_", " ");
    const count = document.createElement("td");
    count.className = "members";
    count.textContent = String(level.members.length);
    const bedCell = document.createElement("td");
    bedCell.textContent = String(beds);
    tr.append(name, count, bedCell, ...["admissions", "outpatient_visits", "referrals_up", "referrals_down", "referrals_overdue"].map((m) => cellHtml(r[m])));
    return tr;
  });
  $("levels-table").querySelector("tbody").replaceChildren(...rows);
}

function renderOverdue() {
  const names = new Map(state.members.levels.flatMap((lv) => lv.members.map((m) => [m.code, m.name])));
  const rows = select("institutions", "DAY", (r) => r.local_date === state.day)
    .filter((r) => r.referrals_received.suppressed || r.referrals_received.value > 0);
  $("overdue-table").querySelector("tbody").replaceChildren(...rows.map((r) => {
    const tr = document.createElement("tr");
    tr.dataset.institution = r.scope;
    const name = document.createElement("td");
    name.textContent = `${names.get(r.scope) || r.scope} (${r.scope})`;
    const level = document.createElement("td");
    level.textContent = r.institution_level || "";
    tr.append(name, level, cellHtml(r.referrals_received), cellHtml(r.referrals_overdue));
    return tr;
  }));
  return rows;
}

function chart(id, type, labels, datasets, options = {}) {
  const data = { labels, datasets: datasets.map((d, i) => ({ borderColor: COLORS[i], backgroundColor: COLORS[i], spanGaps: false, ...d })) };
  if (charts[id]) {
    charts[id].data = data;
    charts[id].update("none");
  } else {
    charts[id] = new Chart($(id), { type, data, options: { animation: false, responsive: true, maintainAspectRatio: false, ...options } });
  }
  $(id).dataset.points = String(datasets.reduce((n, d) => n + d.data.filter((v) => v !== null).length, 0));
}

function renderCharts(overdueRows) {
  const daily = select("consortium", "DAY");
  const labels = daily.map((r) => r.local_date);
  const series = (m) => daily.map((r) => point(r[m]));
  chart("chart-encounters", "line", labels, [
    { label: "Admissions", data: series("admissions") },
    { label: "Discharges", data: series("discharges") },
    { label: "Outpatient visits", data: series("outpatient_visits") },
  ]);
  chart("chart-referrals", "bar", labels, [
    { label: "Up", data: series("referrals_up") },
    { label: "Down", data: series("referrals_down") },
    { label: "Lateral", data: series("referrals_lateral") },
  ]);
  const percent = { scales: { y: { min: 0, max: 1, ticks: { format: { style: "percent" } } } } };
  chart("chart-ratios", "line", labels, RATIOS.map(([m, label]) => ({ label, data: series(m) })), percent);
  chart("chart-flows", "line", labels, [
    { label: "Inpatients (census)", data: series("inpatients") },
    { label: "Referrals overdue", data: series("referrals_overdue") },
    { label: "Referrals completed (loop closed)", data: series("referrals_completed") },
    { label: "Transferred outside", data: series("transfers_outside") },
  ]);
  chart("chart-rates", "line", labels, [
    { label: "Bed occupancy", data: series("bed_occupancy") },
    { label: "Acceptance rate", data: series("acceptance_rate") },
  ], percent);
  chart("chart-times", "line", labels, [
    { label: "Average stay (days)", data: series("average_length_of_stay_days"), yAxisID: "days" },
    { label: "Median minutes to accept", data: series("acceptance_minutes_median"), yAxisID: "minutes" },
    { label: "p90 minutes to accept", data: series("acceptance_minutes_p90"), yAxisID: "minutes" },
  ], { scales: { days: { position: "left", min: 0 }, minutes: { position: "right", min: 0 } } });

  const hours = select("consortium", "HOUR", (r) => r.local_date === state.day);
  const byHour = new Map(hours.map((r) => [localHour(r.window_start), r]));
  const hourLabels = [...Array(24).keys()].map((h) => `${String(h).padStart(2, "0")}:00`);
  const hourly = (m) => [...Array(24).keys()].map((h) => (byHour.has(h) ? point(byHour.get(h)[m]) : 0));
  chart("chart-hours", "bar", hourLabels, [
    { label: "Outpatient visits", data: hourly("outpatient_visits") },
    { label: "Admissions", data: hourly("admissions") },
    { label: "Transfers without referral", data: hourly("transfers_received_unreferred") },
  ]);
  // Transfers between members (counted at the admission; a consortium's received = sent).
  chart("chart-transfers", "line", labels, [
    { label: "Without referral", data: series("transfers_received_unreferred") },
    { label: "With referral", data: series("transfers_received_referred") },
  ]);
  // Mutual recognition (检查检验结果互认): orders of recognised tests in disjoint parts.
  chart("chart-repeats", "line", labels, [
    { label: "Repeat tests avoided (result reused)", data: series("repeat_checks_flagged_reused") },
    { label: "Possible repeats not avoided", data: series("repeat_checks_flagged_not_reused") },
    { label: "Recognised tests, no repeat", data: series("repeat_checks_not_flagged") },
  ]);

  const levels = new Map(select("levels", "DAY", (r) => r.local_date === state.day).map((r) => [r.scope, r]));
  const flow = (m) => LEVELS.map((lv) => (levels.has(lv) ? point(levels.get(lv)[m]) : 0));
  chart("chart-flow", "bar", LEVELS.map((lv) => lv.replace("_", " ")), [
    { label: "Up", data: flow("referrals_up") },
    { label: "Down", data: flow("referrals_down") },
    { label: "Lateral", data: flow("referrals_lateral") },
  ], { indexAxis: "y", scales: { x: { stacked: true }, y: { stacked: true } } });

  // The flow matrix: each sending level's referrals by the destination's level (stacked).
  chart("chart-matrix", "bar", LEVELS.map((lv) => lv.replace("_", " ")),
    LEVELS.map((to) => ({ label: `to ${to.replace("_", " ")}`, data: flow(`referrals_to_${to}`) })),
    { indexAxis: "y", scales: { x: { stacked: true }, y: { stacked: true } } });

  chart("chart-overdue", "bar", overdueRows.map((r) => r.scope), [
    { label: "Overdue", data: overdueRows.map((r) => point(r.referrals_overdue)) },
  ]);
}

// Transfers per member come from the streamed day records (live). Repeat tests are read per
// day from the shared record (not streamed): on a change of day, and every minute. A
// projection not built yet answers 503: shown as "–".
const DAY_TILES = [
  ["repeats", "flagged_reused", "Repeat tests avoided (result reused)"],
  ["repeats", "flagged_not_reused", "Possible repeats not avoided"],
];
const TRANSFER_COLUMNS = ["received_referred", "received_unreferred", "sent_referred", "sent_unreferred"];
const REPEAT_COLUMNS = ["not_flagged", "flagged_reused", "flagged_not_reused"];
const NONE = { value: null, suppressed: false };

async function loadDayReports() {
  const day = state.day;
  if (!day) return;
  const read = (path) => api(`${path}?date=${day}`).catch((err) => {
    if (err.status === 401 || err.status === 403) throw err;
    return null;
  });
  const repeats = await read("/v1/reports/repeat-tests");
  if (day !== state.day) return;
  state.dayReports = { day, repeats };
  renderDayReports();
}

function renderDayReports() {
  if (!state.members) return;
  const reports = state.dayReports || {};
  $("day-tiles").replaceChildren(...DAY_TILES.map(([report, m, label]) =>
    tile(`kpi-${report}-${m}`, label, reports[report] ? reports[report].consortium[m] : NONE)));
  const names = new Map(state.members.levels.flatMap((lv) => lv.members.map((m) => [m.code, m.name])));
  const rows = new Map();
  const row = (i) => rows.get(i.institution) || rows.set(i.institution, { level: i.institution_level }).get(i.institution);
  const moved = (r) => TRANSFER_COLUMNS.some((c) => r[`transfers_${c}`] && (r[`transfers_${c}`].suppressed || r[`transfers_${c}`].value));
  for (const r of select("institutions", "DAY", (r) => r.local_date === state.day && moved(r))) {
    Object.assign(row({ institution: r.scope, institution_level: r.institution_level }),
      ...TRANSFER_COLUMNS.map((c) => ({ [c]: r[`transfers_${c}`] })));
  }
  for (const i of (reports.repeats && reports.repeats.institutions) || []) Object.assign(row(i), ...REPEAT_COLUMNS.map((c) => ({ [c]: i[c] })));
  $("transfers-table").querySelector("tbody").replaceChildren(...[...rows.keys()].sort().map((code) => {
    const r = rows.get(code);
    const tr = document.createElement("tr");
    tr.dataset.institution = code;
    const name = document.createElement("td");
    name.textContent = `${names.get(code) || code} (${code})`;
    const level = document.createElement("td");
    level.textContent = r.level || "";
    const zero = (loaded) => (loaded ? { value: 0, suppressed: false } : NONE);
    tr.append(name, level,
      ...TRANSFER_COLUMNS.map((c) => cellHtml(r[c] || zero(true))),
      ...REPEAT_COLUMNS.map((c) => cellHtml(r[c] || zero(reports.repeats))));
    return tr;
  }));
}

// A refused credential ends the session; anything else is logged and retried a minute later.
function refused(err) {
  if (err.status === 401 || err.status === 403) logout("The token was refused.");
  else console.warn("day reports", err);
}

let pending = null;
function render() {
  pending = null;
  renderDays();
  renderTiles();
  renderLevels();
  renderCharts(renderOverdue());
  if (state.day && (!state.dayReports || state.dayReports.day !== state.day)) {
    state.dayReports = { day: state.day };
    loadDayReports().catch(refused);
  }
  renderDayReports();
  document.body.dataset.records = String(state.records.size);
}
function schedule() { if (!pending) pending = setTimeout(render, 150); }

function parseEvent(block) {
  const event = { name: "message", id: null, data: [] };
  for (const line of block.split("\n")) {
    if (line.startsWith(":")) continue;
    const at = line.indexOf(":");
    const field = at < 0 ? line : line.slice(0, at);
    const value = at < 0 ? "" : line.slice(at + 1).replace(/^ /, "");
    if (field === "event") event.name = value;
    else if (field === "id") event.id = value;
    else if (field === "data") event.data.push(value);
  }
  return event;
}

function setLive(status) {
  $("live").dataset.state = status;
  $("live").textContent = status;
}

// EventSource cannot send an Authorization header, so the stream is read with fetch; a
// reconnect names the last event's id (the stream's positions) and misses nothing.
async function follow(signal, onReady) {
  let lastId = null;
  while (!signal.aborted) {
    try {
      const headers = { Authorization: `Bearer ${state.token}`, Accept: "text/event-stream" };
      if (lastId) headers["Last-Event-ID"] = lastId;
      const resp = await fetch("/v1/reports/stream", { headers, signal, cache: "no-store" });
      if (resp.status === 401 || resp.status === 403) return logout("The token was refused.");
      if (!resp.ok) throw new Error(String(resp.status));
      const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value.replace(/\r\n?/g, "\n");
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const event = parseEvent(buffer.slice(0, end));
          buffer = buffer.slice(end + 2);
          if (event.id) lastId = event.id;
          if (event.name === "ready") {
            setLive("live");
            if (onReady) { await onReady(); onReady = null; }
          } else if (event.name === "figures") {
            put(JSON.parse(event.data.join("\n")).record);
            $("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
            schedule();
          }
        }
      }
    } catch (err) {
      if (signal.aborted) return;
      console.warn("stream interrupted", err);
    }
    setLive("reconnecting");
    await new Promise((resolve) => setTimeout(resolve, 2000));
  }
}

async function start() {
  state.members = await api("/v1/reports/members");
  $("consortium-id").textContent = state.members.consortium_id;
  $("login").hidden = true;
  $("board").hidden = false;
  $("controls").hidden = false;
  state.abort = new AbortController();
  // The snapshot is read once the stream stands at its positions: no change falls between.
  follow(state.abort.signal, async () => { await loadSnapshot(); render(); });
  clearInterval(state.dayTimer);
  state.dayTimer = setInterval(() => loadDayReports().catch(refused), 60000);
}

function logout(message = "") {
  if (state.abort) state.abort.abort();
  clearInterval(state.dayTimer);
  state.dayReports = null;
  sessionStorage.removeItem("bureau-token");
  state.token = null;
  state.records.clear();
  $("board").hidden = true;
  $("controls").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message;
}

async function login(token) {
  state.token = token;
  try {
    await start();
    sessionStorage.setItem("bureau-token", token);
  } catch (err) {
    logout(err.status === 403 ? "This credential is not a bureau analyst's." : err.status === 401 ? "Unknown or revoked token." : `The gateway did not answer: ${err.message}`);
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("login-form").addEventListener("submit", (e) => { e.preventDefault(); login($("token").value.trim()); });
  $("logout").addEventListener("click", () => logout());
  $("day").addEventListener("change", (e) => { state.day = e.target.value; render(); });
  const saved = sessionStorage.getItem("bureau-token");
  if (saved) login(saved);
});
