// The live farm page: shows and their jobs from the gateway's event stream, a job's
// layers and frames from a second stream, and the actions the caller's role allows.
import { follow } from "./sse.js";

const KEY = "opencue-gw-token";
const $ = (selector) => document.querySelector(selector);
const jobs = new Map();
const layers = new Map();
const frames = new Map();
let token = sessionStorage.getItem(KEY);
let may = {};
let farmStream = null;
let detailStream = null;
let selected = null;
let pending = false;

function api(path, options = {}) {
  const headers = { Authorization: `Bearer ${token}`, Accept: "application/json" };
  if (options.body !== undefined) headers["Content-Type"] = "application/json";
  return fetch(path, { ...options, headers });
}

function text(tag, value, className) {
  const cell = document.createElement(tag);
  cell.textContent = value === undefined || value === null ? "" : String(value);
  if (className) cell.className = className;
  return cell;
}

function bar(stats) {
  const total = Number(stats.totalFrames || 0) || 1;
  const div = document.createElement("div");
  div.className = "bar";
  div.title = `${stats.succeededFrames || 0} of ${stats.totalFrames || 0} done`;
  for (const [name, key] of [["done", "succeededFrames"], ["run", "runningFrames"], ["dead", "deadFrames"]]) {
    const part = document.createElement("span");
    part.className = name;
    part.style.width = `${(100 * Number(stats[key] || 0)) / total}%`;
    div.append(part);
  }
  return div;
}

function jobState(job) {
  return job.isPaused && job.state !== "FINISHED" ? "PAUSED" : job.state;
}

function shown(job) {
  const user = $("#user").value.trim();
  const state = $("#state").value;
  if (user && job.user !== user) return false;
  if (state === "DEAD") return Number(job.jobStats?.deadFrames || 0) > 0;
  return !state || jobState(job) === state;
}

async function act(path, label) {
  const answer = await api(path, { method: "POST", body: "{}" });
  if (answer.status === 403) {
    // The policy says no: this action's buttons go away.
    may[label] = false;
    render();
    return;
  }
  if (!answer.ok) {
    const body = await answer.json().catch(() => ({}));
    $("#status").textContent = `${label} failed: ${body.message || answer.status}`;
  }
}

function button(label, className, onClick) {
  const b = document.createElement("button");
  b.textContent = label;
  b.className = className;
  b.addEventListener("click", (event) => { event.stopPropagation(); onClick(); });
  return b;
}

function jobActions(job) {
  const cell = document.createElement("td");
  cell.className = "actions";
  if (job.state === "FINISHED") return cell;
  const id = encodeURIComponent(job.id);
  if (job.isPaused && may.resume) cell.append(button("resume", "resume", () => act(`api/v1/jobs/${id}/resume`, "resume")));
  if (!job.isPaused && may.pause) cell.append(button("pause", "pause", () => act(`api/v1/jobs/${id}/pause`, "pause")));
  if (may.retry && Number(job.jobStats?.deadFrames || 0) > 0) {
    cell.append(button("retry dead", "retry", () => act(`api/v1/jobs/${id}/retry-frames?state=DEAD`, "retry")));
  }
  if (may.kill) {
    cell.append(button("kill", "kill", () => {
      if (confirm(`Kill ${job.name}?`)) act(`api/v1/jobs/${id}/kill`, "kill");
    }));
  }
  return cell;
}

function render() {
  if (pending) return;
  pending = true;
  requestAnimationFrame(() => {
    pending = false;
    const rows = [];
    const sorted = [...jobs.values()].sort((a, b) => (a.name < b.name ? -1 : 1));
    for (const job of sorted) {
      if (!shown(job)) continue;
      const stats = job.jobStats || {};
      const row = document.createElement("tr");
      row.className = job.id === selected ? "job selected" : "job";
      row.dataset.id = job.id;
      const state = text("td", jobState(job), "state");
      state.dataset.state = jobState(job);
      const progress = document.createElement("td");
      progress.append(bar(stats));
      row.append(text("td", job.name, "name"), text("td", job.show), text("td", job.user), state, progress,
        text("td", stats.runningFrames || 0, "running"), text("td", stats.waitingFrames || 0, "waiting"),
        text("td", stats.deadFrames || 0, "dead"), text("td", stats.succeededFrames || 0, "succeeded"),
        jobActions(job));
      row.addEventListener("click", () => select(job.id));
      rows.push(row);
    }
    $("#jobs tbody").replaceChildren(...rows);
    $("#count").textContent = `${rows.length} of ${jobs.size} jobs`;
    renderDetail();
  });
}

function renderDetail() {
  if (!selected) return;
  const layerRows = [...layers.values()].sort((a, b) => (a.name < b.name ? -1 : 1)).map((layer) => {
    const stats = layer.layerStats || {};
    const row = document.createElement("tr");
    row.className = "layer";
    row.dataset.id = layer.id;
    const progress = document.createElement("td");
    progress.append(bar(stats));
    row.append(text("td", layer.name), progress, text("td", stats.runningFrames || 0),
      text("td", stats.waitingFrames || 0), text("td", stats.deadFrames || 0),
      text("td", stats.succeededFrames || 0));
    return row;
  });
  $("#layers tbody").replaceChildren(...layerRows);
  const frameRows = [...frames.values()].sort((a, b) => (a.name < b.name ? -1 : 1)).map((frame) => {
    const row = document.createElement("tr");
    row.className = "frame";
    row.dataset.id = frame.id;
    const state = text("td", frame.state, "state");
    state.dataset.state = frame.state;
    const actions = document.createElement("td");
    if (may.retryFrame && (frame.state === "DEAD" || frame.state === "EATEN")) {
      actions.append(button("retry", "retry-frame",
        () => act(`api/v1/frames/${encodeURIComponent(frame.id)}/retry`, "retryFrame")));
    }
    row.append(text("td", frame.name, "name"), state, text("td", frame.exitStatus), text("td", frame.retryCount),
      text("td", (frame.lastResource || "").split("/")[0]), actions);
    return row;
  });
  $("#frames tbody").replaceChildren(...frameRows);
}

function status(message, ok) {
  const element = $("#status");
  element.textContent = message;
  element.className = ok ? "status live" : "status down";
}

function refused(code, body) {
  status(`refused: ${body.message || code}`, false);
  if (code === 401) logout(body.message || "the token was not accepted");
}

function startFarm() {
  if (farmStream) farmStream.stop();
  jobs.clear();
  const show = $("#show").value;
  const query = show ? `?types=job&show=${encodeURIComponent(show)}` : "?types=job";
  farmStream = follow(`api/v1/events${query}`, token, {
    onEvent(event) {
      if (event.type === "job") {
        jobs.set(event.data.job.id, event.data.job);
        render();
      } else if (["error", "dropped", "shutdown", "expired"].includes(event.type)) {
        status(`${event.type}: ${event.data.message}`, false);
      }
    },
    onStatus: status,
    onRefused: refused,
  });
}

function select(jobId) {
  if (detailStream) detailStream.stop();
  selected = jobId;
  layers.clear();
  frames.clear();
  $("#detail").hidden = false;
  $("#detail-name").textContent = jobs.get(jobId)?.name || jobId;
  const url = `api/v1/events?types=layer,frame&job=${encodeURIComponent(jobId)}`;
  detailStream = follow(url, token, {
    onEvent(event) {
      if (event.type === "layer") layers.set(event.data.layer.id, event.data.layer);
      else if (event.type === "frame") frames.set(event.data.frame.id, event.data.frame);
      else return;
      render();
    },
    onStatus: () => {},
    onRefused: refused,
  });
  render();
}

async function start() {
  const who = await api("api/v1/whoami");
  if (who.status === 401) return logout("the token was not accepted");
  if (!who.ok) return logout(`the gateway answered ${who.status}`);
  const me = await who.json();
  may = me.may || {};
  $("#who").textContent = `${me.sub || "?"}${me.role ? ` (${me.role})` : ""}`;
  $("#login").hidden = true;
  $("#farm").hidden = false;
  $("#logout").hidden = false;
  const shows = await api("api/v1/shows");
  if (shows.ok) {
    const list = await shows.json();
    for (const show of list.items || []) {
      const option = document.createElement("option");
      option.textContent = show.name;
      $("#show").append(option);
    }
  }
  startFarm();
}

function logout(message) {
  sessionStorage.removeItem(KEY);
  token = null;
  if (farmStream) farmStream.stop();
  if (detailStream) detailStream.stop();
  $("#farm").hidden = true;
  $("#logout").hidden = true;
  $("#login").hidden = false;
  $("#login-error").textContent = message || "";
}

$("#login").addEventListener("submit", (event) => {
  event.preventDefault();
  token = $("#token").value.trim();
  if (!token) return;
  sessionStorage.setItem(KEY, token);
  $("#token").value = "";
  start();
});
$("#logout").addEventListener("click", () => logout(""));
$("#show").addEventListener("change", startFarm);
$("#user").addEventListener("input", render);
$("#state").addEventListener("change", render);
$("#close-detail").addEventListener("click", () => {
  if (detailStream) detailStream.stop();
  selected = null;
  $("#detail").hidden = true;
  render();
});

if (token) start(); else logout("");
