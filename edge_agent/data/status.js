"use strict";
// The status page: polls /status/data.json every 2 s and redraws; no framework, no network beyond this node.
const $ = (id) => document.getElementById(id);
const text = (value) => (value === null || value === undefined ? "–" : typeof value === "object" ? JSON.stringify(value) : String(value));
const when = (ts) => (ts ? new Date(ts * 1000).toLocaleTimeString() : "–");

function cell(row, value, cls) {
  const td = row.insertCell();
  td.textContent = text(value);
  if (cls) td.className = cls;
}

function fillTable(id, rows, columns, emptyText) {
  const body = $(id).tBodies[0];
  body.replaceChildren();
  if (!rows.length) {
    const td = body.insertRow().insertCell();
    td.colSpan = columns;
    td.className = "empty";
    td.textContent = emptyText;
  }
  return body;
}

function drawHealth(data) {
  const h = data.health || {};
  const d = data.degradation || {};
  const model = data.model || {};
  const items = [
    ["Model", model.loaded ? model.label : "not loaded: " + text(model.error)],
    ["API model name", data.api_model],
    ["Degradation", `${text(d.level)} ${text(d.name)}`],
    ["Queue depth", data.queue.depth],
    ["Busy", data.queue.busy ? "yes" : "no"],
    ["Decode speed", `${text(data.decode_tokens_per_s)} tokens/s`],
    ["Temperature", h.temperature_c != null ? `${h.temperature_c} °C` : "–"],
    ["Memory available", h.memory_available_mb != null ? `${h.memory_available_mb} MB` : "–"],
    ["Process RSS", h.process_rss_mb != null ? `${h.process_rss_mb} MB` : "–"],
    ["Load (1 min)", h.load_1m],
    ["Spooled results", h.spool_depth],
    ["Throttled now", h.throttled_now],
  ];
  $("health").replaceChildren(...items.map(([name, value]) => {
    const div = document.createElement("div");
    const dt = document.createElement("dt");
    const dd = document.createElement("dd");
    dt.textContent = name;
    dd.textContent = text(value);
    div.append(dt, dd);
    return div;
  }));
}

function drawCameras(data) {
  const box = $("cameras");
  if (!data.cameras.length) {
    box.innerHTML = '<p class="empty">no cameras configured</p>';
    return;
  }
  box.replaceChildren(...data.cameras.map((camera) => {
    const card = document.createElement("div");
    card.className = "card camera";
    const title = document.createElement("h3");
    title.textContent = camera.name + " ";
    const state = document.createElement("span");
    state.className = "state-" + camera.state;
    state.textContent = camera.state;
    title.append(state);
    const img = document.createElement("img");
    img.alt = "newest frame of " + camera.name;
    if (camera.frame_age_s !== null) img.src = `/status/frame/${encodeURIComponent(camera.name)}.jpg?t=${Date.now()}`;
    const note = document.createElement("p");
    note.textContent = camera.error ? camera.error : `frame age ${text(camera.frame_age_s)} s`;
    card.append(title, img, note);
    return card;
  }));
}

function drawLists(data) {
  const tasks = fillTable("tasks", data.tasks, 4, "no tasks configured");
  for (const task of data.tasks) {
    const row = tasks.insertRow();
    const last = task.last || {};
    cell(row, task.name);
    cell(row, task.kind);
    cell(row, task.problem ? task.problem : "value" in last ? last.value : last.answer, "value");
    cell(row, when(last.ts));
  }
  const events = fillTable("events", data.events, 4, "no events yet");
  for (const event of data.events) {
    const row = events.insertRow();
    cell(row, when(event.ts));
    cell(row, event.event_type);
    cell(row, event.question, "value");
    cell(row, event.status === "ok" ? event.answer : event.error, "value");
  }
  const audit = fillTable("audit", data.audit, 5, "no tool calls yet");
  for (const record of data.audit) {
    const row = audit.insertRow();
    cell(row, when(record.ts));
    cell(row, record.tool);
    cell(row, record.task);
    cell(row, record.error ? `${record.status}: ${record.error}` : record.status);
    cell(row, record.arguments, "value");
  }
}

async function refresh() {
  try {
    const response = await fetch("/status/data.json", { cache: "no-store" });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    const data = await response.json();
    $("node").textContent = data.node;
    $("summary").textContent = `version ${text(data.version)} · up since ${when(data.started)} · updated ${when(data.now)}`;
    $("problem").hidden = true;
    drawHealth(data);
    drawCameras(data);
    drawLists(data);
    document.body.dataset.loaded = "yes";
  } catch (error) {
    $("problem").hidden = false;
    $("problem").textContent = "cannot reach the node: " + error.message;
  }
}

refresh();
setInterval(refresh, 2000);
