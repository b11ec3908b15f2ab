"use strict";
// descry's web page: caption images one by one (concurrently) or as a batch job, and show the
// model's health. Plain DOM, no build step; every server string goes in through textContent.

const CONCURRENCY = 4;
const POLL_MS = 1000;
const MAX_ATTEMPTS = 6;
const HEALTH_MS = { ready: 30000, other: 3000 };

const $ = (sel) => document.querySelector(sel);

const ui = {
  form: $("#caption-form"),
  input: $("#files"),
  dropzone: $("#dropzone"),
  selection: $("#selection"),
  captionBtn: $("#caption-btn"),
  batchBtn: $("#batch-btn"),
  clearBtn: $("#clear-btn"),
  results: $("#results"),
  empty: $("#results-empty"),
  template: $("#card-template"),
  health: $("#health"),
  healthText: $("#health-text"),
  batch: $("#batch"),
  batchStatus: $("#batch-status"),
  batchProgress: $("#batch-progress"),
  batchCount: $("#batch-count"),
  batchResults: $("#batch-results"),
};

let chosen = [];
let healthTimer = null;
const objectUrls = [];

// ---- choosing files ---------------------------------------------------------------------

function choose(fileList) {
  chosen = Array.from(fileList || []);
  const n = chosen.length;
  if (n === 0) {
    ui.selection.textContent = "No images chosen.";
  } else {
    const names = chosen.slice(0, 5).map((f) => f.name).join(", ");
    const more = n > 5 ? ` and ${n - 5} more` : "";
    ui.selection.textContent = `${n} image${n === 1 ? "" : "s"} chosen: ${names}${more}.`;
  }
  ui.captionBtn.disabled = n === 0;
  ui.batchBtn.disabled = n === 0;
}

ui.input.addEventListener("change", () => choose(ui.input.files));

["dragenter", "dragover"].forEach((type) =>
  ui.dropzone.addEventListener(type, (event) => {
    event.preventDefault();
    ui.dropzone.classList.add("dragging");
  }),
);
["dragleave", "dragend"].forEach((type) =>
  ui.dropzone.addEventListener(type, () => ui.dropzone.classList.remove("dragging")),
);
ui.dropzone.addEventListener("drop", (event) => {
  event.preventDefault();
  ui.dropzone.classList.remove("dragging");
  const files = event.dataTransfer && event.dataTransfer.files;
  if (!files || files.length === 0) return;
  try {
    ui.input.files = files; // keeps the input and the selection in step
  } catch (_) {
    /* older browsers: the selection below is enough */
  }
  choose(files);
});

function options() {
  const fields = {
    prompt: $("#opt-prompt").value.trim(),
    detail: $("#opt-detail").value,
    max_tokens: $("#opt-max-tokens").value.trim(),
    task: $("#opt-task").value.trim(),
    tags: $("#opt-tags").checked ? "true" : "false",
  };
  if ($("#opt-enhance").checked) fields.enhance = "true";
  return Object.entries(fields).filter(([, value]) => value !== "");
}

// ---- result cards -----------------------------------------------------------------------

function thumbnailUrl(file) {
  const url = URL.createObjectURL(file);
  objectUrls.push(url);
  return url;
}

function newCard(name, thumbUrl, list) {
  const card = ui.template.content.firstElementChild.cloneNode(true);
  card.dataset.name = name;
  card.querySelector(".name").textContent = name;
  const img = card.querySelector(".thumb");
  if (thumbUrl) {
    img.src = thumbUrl;
    img.alt = `Thumbnail of ${name}`;
    img.addEventListener(
      "error",
      () => {
        img.removeAttribute("src");
        img.alt = "";
        card.classList.add("no-preview");
      },
      { once: true },
    );
  }
  card.querySelector(".state").textContent = "Waiting…";
  list.append(card);
  ui.empty.hidden = true;
  return card;
}

function setState(card, state, text) {
  card.dataset.state = state;
  card.querySelector(".state").textContent = text;
}

function formatSeconds(value) {
  if (typeof value !== "number" || !isFinite(value)) return null;
  return value >= 1 ? `${value.toFixed(2)} s` : `${Math.round(value * 1000)} ms`;
}

// timings are seconds, keyed like "decode_s"; the total is shown, every step in the tooltip
function describeTimings(timings) {
  if (!timings || typeof timings !== "object") return { total: null, all: "" };
  const entries = Object.entries(timings).filter(([, v]) => typeof v === "number");
  const all = entries.map(([k, v]) => `${k.replace(/_s$/, "").replace(/_/g, " ")} ${formatSeconds(v)}`);
  const total = typeof timings.total_s === "number" ? formatSeconds(timings.total_s) : null;
  return { total, all: all.join(", ") };
}

function showResult(card, result) {
  setState(card, "done", "Done");
  card.querySelector(".caption").textContent = result.caption || "";
  const tags = card.querySelector(".tags");
  tags.replaceChildren();
  for (const raw of result.tags || []) {
    const tag = typeof raw === "string" ? { name: raw } : raw; // batch results carry tag names only
    const chip = document.createElement("li");
    chip.className = "tag";
    chip.dataset.source = tag.source || "";
    chip.textContent = tag.name;
    const score = typeof tag.score === "number" ? `, score ${tag.score.toFixed(2)}` : "";
    if (tag.source) chip.title = `${tag.source}${score}`;
    tags.append(chip);
  }
  const trace = result.reasoning_trace || [];
  const details = card.querySelector(".trace");
  const steps = card.querySelector(".trace-steps");
  steps.replaceChildren(
    ...trace.map((step) => {
      const li = document.createElement("li");
      li.textContent = typeof step === "string" ? step : JSON.stringify(step);
      return li;
    }),
  );
  details.hidden = trace.length === 0;
  details.querySelector("summary").textContent = `Reasoning trace (${trace.length} step${trace.length === 1 ? "" : "s"})`;
  const meta = [];
  const image = result.image;
  if (image && image.width) meta.push(`${image.width}×${image.height} ${image.format || ""}`.trim());
  if (result.model) meta.push(result.model);
  if (result.enhanced) meta.push("polished by the LLM");
  if (result.attempts > 1) meta.push(`${result.attempts} attempts`);
  const timings = describeTimings(result.timings);
  if (timings.total) meta.push(timings.total);
  if (result.request_id) meta.push(`request ${result.request_id}`);
  const metaBox = card.querySelector(".meta");
  metaBox.textContent = meta.join(" · ");
  if (timings.all) metaBox.title = timings.all;
}

function showError(card, code, message) {
  setState(card, "error", "Failed");
  const box = card.querySelector(".error");
  box.textContent = code ? `${message} [${code}]` : message;
  box.dataset.code = code || "";
  box.hidden = false;
}

// ---- talking to the server --------------------------------------------------------------

const KEY_STORAGE = "descry.apiKey";

function apiKey() {
  return $("#opt-key").value.trim();
}

function api(path, init = {}) {
  const headers = new Headers(init.headers || {});
  const key = apiKey();
  if (key) headers.set("X-API-Key", key);
  return fetch(path, { ...init, headers });
}

$("#opt-key").value = sessionStorage.getItem(KEY_STORAGE) || "";
$("#opt-key").addEventListener("change", () => {
  const key = apiKey();
  if (key) sessionStorage.setItem(KEY_STORAGE, key);
  else sessionStorage.removeItem(KEY_STORAGE);
  checkHealth();
});

async function readError(response) {
  let body = null;
  try {
    body = await response.json();
  } catch (_) {
    /* not JSON */
  }
  const error = body && body.error;
  if (error && error.message) {
    const code = error.code || `http_${response.status}`;
    const hint = response.status === 401 ? " Enter the key under Options → API key." : "";
    return { code, message: error.message + hint };
  }
  if (body && typeof body.detail === "string") return { code: `http_${response.status}`, message: body.detail };
  return { code: `http_${response.status}`, message: `The server answered ${response.status} ${response.statusText}.` };
}

function unreachable(err) {
  return {
    code: "unreachable",
    message: `Could not reach the descry server (${err.message}). Check that it is running and try again.`,
  };
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// 429 (busy) and 503 (model still loading) say when to come back; other errors are final
async function postWithRetry(path, makeBody, card) {
  for (let attempt = 1; ; attempt++) {
    const response = await api(path, { method: "POST", body: makeBody() });
    const retryable = response.status === 429 || response.status === 503;
    if (!retryable || attempt >= MAX_ATTEMPTS) return response;
    const seconds = Math.min(Number(response.headers.get("Retry-After")) || 2, 30);
    setState(card, "pending", `Server busy, retrying in ${seconds} s…`);
    await sleep(seconds * 1000);
    setState(card, "pending", "Captioning…");
  }
}

async function captionOne(file, fields, card) {
  const makeBody = () => {
    const form = new FormData();
    form.append("file", file, file.name);
    for (const [key, value] of fields) form.append(key, value);
    return form;
  };
  setState(card, "pending", "Captioning…");
  try {
    const response = await postWithRetry("v1/caption", makeBody, card);
    if (!response.ok) {
      const { code, message } = await readError(response);
      showError(card, code, message);
      return;
    }
    showResult(card, await response.json());
  } catch (err) {
    const { code, message } = unreachable(err);
    showError(card, code, message);
  }
}

async function captionAll(files) {
  const fields = options();
  const jobs = files.map((file) => ({ file, card: newCard(file.name, thumbnailUrl(file), ui.results) }));
  let next = 0;
  const worker = async () => {
    while (next < jobs.length) {
      const { file, card } = jobs[next++];
      await captionOne(file, fields, card);
    }
  };
  await Promise.all(Array.from({ length: Math.min(CONCURRENCY, jobs.length) }, worker));
}

ui.form.addEventListener("submit", (event) => {
  event.preventDefault();
  if (chosen.length) captionAll(chosen);
});

// ---- batch jobs -------------------------------------------------------------------------

function itemName(item, index, files) {
  return item.image_path || item.name || (files[index] && files[index].name) || `image ${index + 1}`;
}

// The status payload's result, once finished: {results: [{image_path, caption, tags, error}], ...}.
function batchItems(result) {
  if (!result) return [];
  if (Array.isArray(result)) return result;
  return Array.isArray(result.results) ? result.results : [];
}

// progress: {total, done (failed included), failed}
function batchProgress(status, items, total) {
  const progress = status.progress;
  if (progress && typeof progress.total === "number") {
    return { done: Math.min(progress.done || 0, progress.total), total: progress.total, failed: progress.failed || 0 };
  }
  return { done: isFinished(status.status) ? total : items.length, total, failed: 0 };
}

function isFinished(state) {
  return ["completed", "completed_with_errors", "failed", "cancelled"].includes(String(state));
}

function renderBatch(status, files, thumbs) {
  const items = batchItems(status.result);
  const { done, total, failed } = batchProgress(status, items, files.length);
  ui.batchProgress.max = Math.max(total, 1);
  ui.batchProgress.value = done;
  ui.batchProgress.setAttribute("aria-valuetext", `${done} of ${total} images`);
  const failures = failed ? `, ${failed} failed` : "";
  ui.batchCount.textContent = `${done} of ${total} image${total === 1 ? "" : "s"}${failures}`;
  const state = String(status.status || "queued");
  ui.batch.dataset.state = state;
  ui.batchStatus.textContent = status.message ? `${state}: ${status.message}` : state;
  if (!isFinished(state) && items.length === 0) return;
  ui.batchResults.replaceChildren();
  items.forEach((item, index) => {
    const name = itemName(item, index, files);
    const card = newCard(name, thumbs.get(name), ui.batchResults);
    const error = item.error;
    if (error) showError(card, error.code, error.message || String(error));
    else showResult(card, item);
  });
}

async function pollBatch(taskId, files, thumbs) {
  for (;;) {
    let status;
    try {
      const response = await api(`async-batch-caption/status/${encodeURIComponent(taskId)}`);
      if (response.status === 429 || response.status === 503) {
        await sleep(Math.min(Number(response.headers.get("Retry-After")) || 2, 30) * 1000);
        continue;
      }
      if (!response.ok) {
        const { code, message } = await readError(response);
        ui.batch.dataset.state = "error";
        ui.batchStatus.textContent = `Could not follow the job: ${message} [${code}]`;
        return;
      }
      status = await response.json();
    } catch (err) {
      ui.batchStatus.textContent = unreachable(err).message;
      await sleep(POLL_MS * 3);
      continue;
    }
    renderBatch(status, files, thumbs);
    if (isFinished(status.status)) return;
    await sleep(POLL_MS);
  }
}

async function submitBatch(files) {
  const form = new FormData();
  for (const file of files) form.append("files", file, file.name);
  for (const [key, value] of options()) form.append(key, value);
  const thumbs = new Map(files.map((f) => [f.name, thumbnailUrl(f)]));
  ui.batch.hidden = false;
  ui.batch.dataset.state = "submitting";
  ui.batchResults.replaceChildren();
  ui.batchProgress.max = files.length;
  ui.batchProgress.value = 0;
  ui.batchCount.textContent = `0 of ${files.length} images`;
  ui.batchStatus.textContent = `Submitting ${files.length} image${files.length === 1 ? "" : "s"}…`;
  ui.batchBtn.disabled = true;
  try {
    const response = await api("async-batch-caption", { method: "POST", body: form });
    if (!response.ok) {
      const { code, message } = await readError(response);
      ui.batch.dataset.state = "error";
      ui.batchStatus.textContent = `The batch was not accepted: ${message} [${code}]`;
      return;
    }
    const accepted = await response.json();
    ui.batch.dataset.taskId = accepted.task_id;
    ui.batchStatus.textContent = accepted.message || "queued";
    await pollBatch(accepted.task_id, files, thumbs);
  } catch (err) {
    ui.batch.dataset.state = "error";
    ui.batchStatus.textContent = unreachable(err).message;
  } finally {
    ui.batchBtn.disabled = chosen.length === 0;
  }
}

ui.batchBtn.addEventListener("click", () => {
  if (chosen.length) submitBatch(chosen);
});

ui.clearBtn.addEventListener("click", () => {
  ui.results.replaceChildren();
  ui.batchResults.replaceChildren();
  ui.batch.hidden = true;
  ui.empty.hidden = false;
  while (objectUrls.length) URL.revokeObjectURL(objectUrls.pop());
});

// ---- model health -----------------------------------------------------------------------

// /health: {status: ok|loading|failed|stopped, model, model_status, device, error, ...}
function healthState(body) {
  const raw = String(body.model_status || body.status || "unknown").toLowerCase();
  if (raw === "ok") return "ready";
  if (raw === "stopped") return "loading";
  return raw;
}

async function checkHealth() {
  let state = "unreachable";
  let text = "The server cannot be reached.";
  try {
    const response = await api("health", { cache: "no-store" });
    if (!response.ok) {
      const { message } = await readError(response);
      state = response.status === 401 || response.status === 403 ? "locked" : "unreachable";
      text = message;
    } else {
      const body = await response.json();
      state = healthState(body);
      const label = body.model ? `Model ${body.model}` : "Model";
      const where = body.device ? ` on ${body.device}` : "";
      if (state === "ready") text = `${label} ready${where}`;
      else if (state === "failed") text = `${label} failed to load${body.error ? `: ${body.error}` : ""}`;
      else if (state === "loading") text = `${label} loading…`;
      else text = `${label}: ${state}`;
    }
  } catch (_) {
    /* unreachable */
  }
  ui.health.dataset.status = state;
  ui.healthText.textContent = text;
  clearTimeout(healthTimer);
  healthTimer = setTimeout(checkHealth, state === "ready" ? HEALTH_MS.ready : HEALTH_MS.other);
}

choose([]);
checkHealth();
