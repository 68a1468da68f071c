// Kubescribe's web page: plain JavaScript against the gateway's REST API, with the API key on every request.
"use strict";

const KEY_STORAGE = "kubescribe.apiKey";
const PAGE_SIZE = 20;
const RECORDING_TYPES = ["audio/webm;codecs=opus", "audio/ogg;codecs=opus", "audio/webm", "audio/ogg"];

const $ = (selector) => document.querySelector(selector);
const state = {
  key: localStorage.getItem(KEY_STORAGE) || "",
  views: new Map(), // job id -> latest job view
  follows: new Map(), // job id -> AbortController of its events stream
  nextPageToken: null,
  recorder: null,
};

class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;
  }
}

// The gateway

async function api(path, options = {}) {
  if (!state.key) throw new ApiError("Enter your API key first.", 0);
  const headers = new Headers(options.headers || {});
  headers.set("Authorization", `Bearer ${state.key}`);
  let response;
  try {
    response = await fetch(path, { ...options, headers });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(`Cannot reach the gateway: ${error.message}`, 0);
  }
  if (!response.ok) throw new ApiError(await errorMessage(response), response.status);
  return response;
}

async function errorMessage(response) {
  try {
    const body = await response.json();
    if (body.error && body.error.message) return `${body.error.message} (${response.status})`;
  } catch {
    // not JSON: fall through
  }
  return `The gateway answered ${response.status} ${response.statusText}`.trim();
}

const jobPath = (id, rest = "") => `v1/jobs/${encodeURIComponent(id)}${rest}`;

// Server-sent events, read from a fetch response (EventSource cannot send the Authorization header).
async function* sseEvents(response) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let event = "";
  let data = [];
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value;
      const lines = buffer.split(/\r?\n/);
      buffer = lines.pop();
      for (const line of lines) {
        if (line === "") {
          if (data.length) yield { event: event || "message", data: data.join("\n") };
          event = "";
          data = [];
        } else if (!line.startsWith(":")) {
          const colon = line.indexOf(":");
          const field = colon < 0 ? line : line.slice(0, colon);
          const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
          if (field === "event") event = value;
          else if (field === "data") data.push(value);
        }
      }
    }
  } finally {
    reader.cancel().catch(() => {});
  }
}

const sleep = (ms, signal) =>
  new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => { clearTimeout(timer); resolve(); }, { once: true });
  });

// Follows one job's events until it finishes; reconnects when the stream drops.
async function follow(id) {
  if (state.follows.has(id)) return;
  const controller = new AbortController();
  const { signal } = controller;
  state.follows.set(id, controller);
  try {
    while (!signal.aborted) {
      try {
        const response = await api(jobPath(id, "/events"), { signal, headers: { Accept: "text/event-stream" } });
        for await (const message of sseEvents(response)) {
          if (message.event === "end") break;
          if (message.event !== "status" || signal.aborted) continue;
          const view = JSON.parse(message.data);
          show(view);
          if (view.finished) return;
        }
        const view = await (await api(jobPath(id), { signal })).json();
        if (signal.aborted) return;
        show(view);
        if (view.finished) return;
      } catch (error) {
        if (error.status === 404) forget(id);
        if (error.name === "AbortError" || error.status === 404 || error.status === 401) return;
      }
      await sleep(2000, signal);
    }
  } finally {
    if (state.follows.get(id) === controller) state.follows.delete(id);
  }
}

function stopFollowing() {
  for (const controller of state.follows.values()) controller.abort();
  state.follows.clear();
}

// Formatting

function clock(seconds) {
  const total = Math.max(0, seconds);
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = (total % 60).toFixed(1).padStart(4, "0");
  return h ? `${h}:${String(m).padStart(2, "0")}:${s}` : `${m}:${s}`;
}

function duration(seconds) {
  const s = Math.round(seconds);
  return s < 60 ? `${s} s` : `${Math.floor(s / 60)} min ${s % 60} s`;
}

function progressText(view) {
  if (view.phase === "Succeeded") return "Done";
  const p = view.progress;
  if (!p || p.percent == null) return view.phase === "Running" ? "Starting" : "";
  let text = `${Math.round(p.percent)}%`;
  if (view.phase === "Running" && p.etaSeconds != null) text += `, about ${duration(p.etaSeconds)} left`;
  return text;
}

function element(tag, props = {}, ...children) {
  const node = Object.assign(document.createElement(tag), props);
  node.append(...children);
  return node;
}

// The jobs table

function jobRow(id) {
  let row = document.querySelector(`#jobs tr[data-id="${CSS.escape(id)}"]`);
  if (row) return row;
  const name = element("th", { scope: "row", className: "file" });
  const phase = element("td", { className: "phase" });
  const progress = element("progress", { max: 100 });
  const progressCell = element("td", {}, progress, element("span", { className: "progress-text" }));
  const transcript = element("button", { type: "button", textContent: "Transcript", className: "show" });
  const remove = element("button", { type: "button", className: "delete secondary" });
  transcript.addEventListener("click", () => openTranscript(id));
  remove.addEventListener("click", () => deleteJob(id));
  row = element("tr", {}, name, phase, progressCell, element("td", { className: "model" }),
    element("td", { className: "created" }), element("td", { className: "actions" }, transcript, remove));
  row.dataset.id = id;
  return row;
}

// Shows the latest view of a job in its row (added in creation order, newest first).
function show(view) {
  const before = state.views.get(view.id)?.phase;
  state.views.set(view.id, view);
  const row = jobRow(view.id);
  if (!row.isConnected) {
    const rows = [...document.querySelectorAll("#jobs tbody tr")];
    const older = rows.find((other) => (state.views.get(other.dataset.id)?.created || "") < (view.created || ""));
    $("#jobs tbody").insertBefore(row, older || null);
  }
  const file = view.filename || view.id;
  row.dataset.phase = view.phase;
  row.querySelector(".file").textContent = file;
  row.querySelector(".file").title = view.id;
  const phase = row.querySelector(".phase");
  phase.textContent = view.phase;
  if (view.error) phase.append(element("span", { className: "error-text", textContent: view.error.message || view.error.reason }));
  const progress = row.querySelector("progress");
  const percent = view.phase === "Succeeded" ? 100 : view.progress?.percent;
  if (percent == null) progress.removeAttribute("value");
  else progress.value = percent;
  progress.setAttribute("aria-label", `Progress of ${file}`);
  progress.hidden = view.finished && view.phase !== "Succeeded";
  row.querySelector(".progress-text").textContent = progressText(view);
  row.querySelector(".model").textContent = [view.model, view.language].filter(Boolean).join(", ");
  row.querySelector(".created").textContent = view.created ? new Date(view.created).toLocaleString() : "";
  const transcript = row.querySelector(".show");
  transcript.hidden = view.phase !== "Succeeded";
  transcript.setAttribute("aria-label", `Transcript of ${file}`);
  const remove = row.querySelector(".delete");
  remove.textContent = view.finished ? "Delete" : "Cancel";
  remove.setAttribute("aria-label", `${remove.textContent} ${file}`);
  $("#jobs-empty").hidden = state.views.size > 0;
  if (before && before !== view.phase && view.finished) announce("#jobs-status", `${file}: ${view.phase}`);
  if (!view.finished) follow(view.id);
}

// The phases a job goes through, as the API's own document names them.
async function listPhases() {
  try {
    const schema = await (await fetch("openapi.json")).json();
    const options = schema.components.schemas.JobView.properties.phase.enum.map((phase) => element("option", { textContent: phase }));
    $("#phase-filter").append(...options);
  } catch {
    $("#phase-filter").disabled = true;
  }
}

async function loadJobs({ more = false } = {}) {
  if (!more) {
    stopFollowing();
    state.views.clear();
    state.nextPageToken = null;
    $("#jobs tbody").replaceChildren();
  }
  const query = new URLSearchParams({ limit: String(PAGE_SIZE) });
  if ($("#phase-filter").value) query.set("phase", $("#phase-filter").value);
  if (more && state.nextPageToken) query.set("page_token", state.nextPageToken);
  try {
    const page = await (await api(`v1/jobs?${query}`)).json();
    page.jobs.forEach(show);
    state.nextPageToken = page.next_page_token || null;
    $("#more").hidden = !state.nextPageToken;
    $("#jobs-empty").hidden = state.views.size > 0;
    return true;
  } catch (error) {
    alertUser(error.message);
    return false;
  }
}

// DELETE cancels a job that has not finished, and deletes the job with its audio and transcripts.
async function deleteJob(id) {
  const view = state.views.get(id);
  const name = view?.filename || id;
  try {
    await api(jobPath(id), { method: "DELETE" });
    forget(id);
    announce("#upload-status", `${view?.finished ? "Deleted" : "Cancelled and deleted"} ${name}.`);
  } catch (error) {
    alertUser(error.message);
  }
}

function forget(id) {
  state.follows.get(id)?.abort();
  state.views.delete(id);
  document.querySelector(`#jobs tr[data-id="${CSS.escape(id)}"]`)?.remove();
  $("#jobs-empty").hidden = state.views.size > 0;
  if ($("#transcript").dataset.id === id) $("#transcript").hidden = true;
}

// Uploads and recordings

function uploadForm(file) {
  const form = new FormData();
  form.append("file", file, file.name);
  const formats = [...document.querySelectorAll('input[name="format"]:checked')].map((box) => box.value);
  form.append("formats", [...new Set(["json", ...formats])].join(","));
  for (const name of ["model", "language", "task"]) {
    const value = $(`#${name}`).value.trim();
    if (value) form.append(name, value);
  }
  form.append("vad", String($("#vad").checked));
  form.append("word_timestamps", String($("#word-timestamps").checked));
  return form;
}

async function submit(file) {
  announce("#upload-status", `Uploading ${file.name}…`);
  $("#upload").disabled = true;
  try {
    const view = await (await api("v1/jobs", { method: "POST", body: uploadForm(file) })).json();
    announce("#upload-status", `${file.name} was submitted; its progress is shown under Jobs.`);
    show(view);
  } catch (error) {
    announce("#upload-status", "");
    alertUser(`Upload of ${file.name} failed: ${error.message}`);
  } finally {
    $("#upload").disabled = false;
  }
}

async function toggleRecording() {
  const button = $("#record");
  if (state.recorder) {
    state.recorder.stop();
    return;
  }
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ audio: true });
  } catch (error) {
    alertUser(`The microphone is not available: ${error.message}`);
    return;
  }
  const type = RECORDING_TYPES.find((candidate) => MediaRecorder.isTypeSupported(candidate)) || "";
  const recorder = new MediaRecorder(stream, type ? { mimeType: type } : {});
  const chunks = [];
  const started = Date.now();
  const timer = setInterval(() => { $("#record-time").textContent = clock((Date.now() - started) / 1000); }, 250);
  recorder.addEventListener("dataavailable", (event) => { if (event.data.size) chunks.push(event.data); });
  recorder.addEventListener("stop", () => {
    clearInterval(timer);
    stream.getTracks().forEach((track) => track.stop());
    state.recorder = null;
    button.textContent = "Record from microphone";
    button.setAttribute("aria-pressed", "false");
    $("#record-time").textContent = "";
    const blob = new Blob(chunks, { type: (recorder.mimeType || type || "audio/webm").split(";")[0] });
    const stamp = new Date().toISOString().slice(0, 19).replace(/[:T]/g, "-");
    submit(new File([blob], `recording-${stamp}.${blob.type.includes("ogg") ? "ogg" : "webm"}`, { type: blob.type }));
  });
  recorder.start(1000);
  state.recorder = recorder;
  button.textContent = "Stop recording and transcribe";
  button.setAttribute("aria-pressed", "true");
  announce("#upload-status", "Recording…");
}

// The transcript

async function openTranscript(id) {
  const view = state.views.get(id);
  const section = $("#transcript");
  const formats = view?.formats || ["json"];
  try {
    // The page reads the json format; a job submitted without it (by the CLI, say) only offers its downloads.
    const transcript = formats.includes("json")
      ? await (await api(jobPath(id, "/transcript?format=json"))).json()
      : { segments: [] };
    $("#transcript-heading").textContent = `Transcript of ${view?.filename || id}`;
    const details = [transcript.language && `Language: ${transcript.language}`,
      transcript.duration != null && `Duration: ${duration(transcript.duration)}`,
      !formats.includes("json") && "This job has no JSON transcript to show here; download one of its formats."];
    $("#transcript-meta").textContent = details.filter(Boolean).join(" · ");
    $("#downloads").replaceChildren(...formats.map((format) => {
      const button = element("button", { type: "button", className: "secondary", textContent: `Download ${format.toUpperCase()}` });
      button.addEventListener("click", () => download(id, format));
      return button;
    }));
    $("#segments").replaceChildren(...transcript.segments.map((segment) => element("li", {},
      element("span", { className: "time mono", textContent: `${clock(segment.start)} – ${clock(segment.end)}` }),
      element("span", { className: "text", textContent: segment.text.trim() }))));
    section.dataset.id = id;
    section.hidden = false;
    $("#transcript-heading").focus();
  } catch (error) {
    alertUser(error.message);
  }
}

function filenameOf(response, fallback) {
  const disposition = response.headers.get("Content-Disposition") || "";
  const encoded = /filename\*=UTF-8''([^;]+)/i.exec(disposition);
  if (encoded) return decodeURIComponent(encoded[1]);
  const plain = /filename="?([^";]+)"?/i.exec(disposition);
  return plain ? plain[1] : fallback;
}

async function download(id, format) {
  try {
    const response = await api(jobPath(id, `/transcript?format=${encodeURIComponent(format)}`));
    const stem = (state.views.get(id)?.filename || id).replace(/\.[^.]*$/, "");
    const url = URL.createObjectURL(await response.blob());
    const link = element("a", { href: url, download: filenameOf(response, `${stem}.${format}`) });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  } catch (error) {
    alertUser(error.message);
  }
}

// Messages and the key

function announce(selector, text) {
  $(selector).textContent = text;
}

function alertUser(text) {
  $("#alert").textContent = text;
}

async function loadModels() {
  try {
    const body = await (await api("v1/models")).json();
    const names = (body.data || body.models || []).map((model) => (typeof model === "string" ? model : model.id));
    // whisper-1 is the OpenAI-compatible endpoints' alias, not a model name for /v1/jobs.
    const choices = names.filter((name) => name && name !== "whisper-1");
    $("#models").replaceChildren(...choices.map((name) => element("option", { value: name })));
  } catch {
    // Optional: the model field stays free text.
  }
}

async function useKey(key) {
  state.key = key;
  $("#alert").textContent = "";
  if (!key) {
    stopFollowing();
    state.views.clear();
    $("#jobs tbody").replaceChildren();
    $("#jobs-empty").hidden = false;
    announce("#key-status", "No API key saved.");
    return;
  }
  if (await loadJobs()) {
    announce("#key-status", "API key saved in this browser.");
    loadModels();
  } else {
    announce("#key-status", "");
  }
}

function start() {
  $("#api-key").value = state.key;
  $("#key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const key = $("#api-key").value.trim();
    localStorage.setItem(KEY_STORAGE, key);
    useKey(key);
  });
  $("#forget-key").addEventListener("click", () => {
    localStorage.removeItem(KEY_STORAGE);
    $("#api-key").value = "";
    useKey("");
  });
  $("#upload-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const file = $("#file").files[0];
    if (!file) {
      alertUser("Choose an audio or video file first, or record from the microphone.");
      return;
    }
    $("#alert").textContent = "";
    submit(file);
  });
  $("#record").addEventListener("click", toggleRecording);
  if (!window.MediaRecorder || !navigator.mediaDevices) $("#record").disabled = true;
  $("#refresh").addEventListener("click", () => loadJobs());
  $("#phase-filter").addEventListener("change", () => loadJobs());
  listPhases();
  $("#more").addEventListener("click", () => loadJobs({ more: true }));
  if (state.key) useKey(state.key);
  else announce("#key-status", "Enter your API key to start.");
}

start();
