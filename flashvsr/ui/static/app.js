// FlashVSR web UI. Everything goes through the HTTP API under /api — the same one scripts use —
// so the page holds no state the server does not have: reloading it shows the same uploads and jobs.

const POLL_ACTIVE_MS = 500;      // job progress refresh while something runs
const POLL_IDLE_MS = 3000;       // …and while nothing does (another tab may add jobs)
const PLAN_DEBOUNCE_MS = 250;    // wait for typing to pause before asking for output sizes
const SYNC_TOLERANCE_S = 0.06;   // how far the "before" video may drift before it is re-seeked
const CROP_PX = 256;             // size of each zoomed crop canvas
const SPLIT_KEY_STEP = 0.05;     // arrow keys move the before/after split by 5 %
const STATE_LABELS = {
  queued: "Queued", loading: "Loading model", running: "Running",
  done: "Done", failed: "Failed", cancelled: "Cancelled",
};
const FORMAT_LABELS = {
  h264: "H.264", h265: "H.265", prores: "ProRes 422 HQ", ffv1: "FFV1 lossless",
  png: "PNG", jpg: "JPEG", webp: "WebP", tiff: "TIFF", bmp: "BMP",
};
const ICONS = {  // inline SVG: icon fonts and emoji are missing on some systems
  play: '<svg viewBox="0 0 16 16" width="14" height="14"><path d="M4 2.5v11l9-5.5z" fill="currentColor"/></svg>',
  pause: '<svg viewBox="0 0 16 16" width="14" height="14"><path d="M3.5 2.5h3v11h-3zM9.5 2.5h3v11h-3z" fill="currentColor"/></svg>',
  prev: '<svg viewBox="0 0 16 16" width="14" height="14"><path d="M3 2.5h2v11H3zM13 2.5v11L6 8z" fill="currentColor"/></svg>',
  next: '<svg viewBox="0 0 16 16" width="14" height="14"><path d="M11 2.5h2v11h-2zM3 2.5v11L10 8z" fill="currentColor"/></svg>',
};
const ACTIVE = new Set(["queued", "loading", "running"]);
const OTHER_FOLDER = "__other__";

const $ = (id) => document.getElementById(id);

const state = {
  info: null,
  infoLoaded: null,     // the /api/info request: files chosen before it answers wait for it
  uploads: new Map(),   // upload id → {data, element}
  jobs: new Map(),      // job id → {data, element}
  pollTimer: null,
  planTimer: null,
};

// ---------------------------------------------------------------------------------------------
// The API

async function api(method, path, body) {
  const options = { method, headers: {} };
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const response = await fetch(path, options);
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(data.detail || `${response.status} ${response.statusText}`);
  return data;
}

// XMLHttpRequest rather than fetch: it reports upload progress
function sendFile(file, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", `/api/uploads?name=${encodeURIComponent(file.name)}`);
    xhr.setRequestHeader("Content-Type", "application/octet-stream");
    xhr.upload.onprogress = (e) => e.lengthComputable && onProgress(e.loaded / e.total);
    xhr.onload = () => {
      let data = {};
      try { data = JSON.parse(xhr.responseText); } catch { /* not JSON: use the status line */ }
      if (xhr.status < 300) resolve(data);
      else reject(new Error(data.detail || `${file.name}: upload refused (${xhr.status})`));
    };
    xhr.onerror = () => reject(new Error(`${file.name}: the upload was interrupted (is the server running?)`));
    xhr.send(file);
  });
}

// ---------------------------------------------------------------------------------------------
// Formatting

function formatBytes(n) {
  const units = ["bytes", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${i ? n.toFixed(n < 10 ? 1 : 0) : n} ${units[i]}`;
}

function formatClock(seconds) {
  if (seconds == null || !isFinite(seconds)) return "–";
  const m = Math.floor(seconds / 60);
  const s = seconds - m * 60;
  return `${m}:${s.toFixed(2).padStart(5, "0")}`;
}

function formatLength(seconds) {
  return seconds >= 60 ? `${+(seconds / 60).toFixed(1)} min` : `${+seconds.toFixed(1)} s`;
}

function formatEta(seconds) {
  if (seconds == null || !isFinite(seconds)) return "";
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
  return h ? `${h}:${String(m).padStart(2, "0")}:${String(r).padStart(2, "0")}` : `${m}:${String(r).padStart(2, "0")}`;
}

function formatAudio(tracks) {
  if (!tracks.length) return "none";
  const channels = { 1: "mono", 2: "stereo", 6: "5.1", 8: "7.1" };
  return tracks.map((a) => `${a.codec.toUpperCase()} · ${a.sample_rate / 1000} kHz · ${channels[a.channels] || a.channels + " ch"}`).join("; ");
}

function mediaKind(u) {
  if (u.kind === "image") return `Image · ${(u.name.split(".").pop() || "").toUpperCase()}`;
  return `Video · ${(u.codec || "?").toUpperCase()}`;
}

function propertyRows(u) {
  const rows = [["Type", mediaKind(u)], ["Size", `${u.width} × ${u.height}`]];
  if (u.kind !== "image") {
    rows.push(["Frames", String(u.frames)]);
    rows.push(["Frame rate", u.fps ? `${u.fps.toFixed(2)} fps` : "–", u.fps_exact]);
    rows.push(["Duration", u.duration != null ? `${u.duration.toFixed(2)} s` : "–"]);
    rows.push(["Audio", formatAudio(u.audio), null, "wide"]);
  }
  if (u.rotation) rows.push(["Rotation", `${u.rotation}°`]);
  if (u.pixel_aspect) rows.push(["Pixel aspect", u.pixel_aspect]);
  rows.push(["File", formatBytes(u.bytes)]);
  return rows;
}

function showMessage(id, text) {
  const box = $(id);
  box.textContent = text;
  box.hidden = !text;
}

function addMessage(id, text) {
  const box = $(id);
  showMessage(id, box.hidden ? text : `${box.textContent}\n${text}`);
}

// ---------------------------------------------------------------------------------------------
// Start-up: what the server offers

async function start() {
  state.infoLoaded = api("GET", "/api/info");
  bindUploads();  // at once: a file chosen while a busy server answers must not be lost
  try {
    state.info = await state.infoLoaded;
  } catch (e) {
    $("server-status").textContent = `server not reachable: ${e.message}`;
    return;
  }
  fillSettings(state.info);
  bindSettings();
  bindPlayer();
  const { uploads } = await api("GET", "/api/uploads");
  uploads.forEach((u) => showUpload(u, false));  // from before a reload: not picked again by surprise
  refreshPlans();
  poll();
}

function fillSettings(info) {
  const { choices, defaults, limits } = info;
  fillSelect("release", choices.release.map((r) => [r, r === "auto" ? "auto" : r]), defaults.release);
  fillSelect("sparse-ratio", choices.sparse_ratio.map((r) => [r, r === 2 ? "2.0 (reference)" : `${r} (faster)`]), defaults.sparse_ratio);
  fillSelect("local-range", choices.local_range.map((r) => [r, r === 11 ? "11 (more stable)" : `${r} (sharper)`]), defaults.local_range);
  $("variant").value = defaults.variant;
  $("color-fix").value = defaults.color_fix;
  $("stabilize").value = defaults.stabilize;
  $("seed").value = defaults.seed;
  $("scale").value = defaults.scale;
  $("quality").value = defaults.quality;
  fillModelFolders(info);
  $("limits").textContent =
    `Up to ${formatBytes(limits.max_upload_bytes)} and ${formatLength(limits.max_duration_s)} per video · several files at once`;
  $("server-status").innerHTML = "";
  renderServerStatus(info.loaded_model);
}

function fillSelect(id, options, selected) {
  const select = $(id);
  select.replaceChildren(...options.map(([value, label]) => new Option(label, value)));
  select.value = String(selected);
}

function fillModelFolders(info) {
  const options = info.models.map((m) => {
    const option = new Option(m.available ? m.label : `${m.label} — not available`, m.path);
    option.disabled = !m.available;
    option.title = m.problem || m.path;
    return option;
  });
  options.push(new Option("Other folder…", OTHER_FOLDER));
  $("weights").replaceChildren(...options);
  $("weights").value = info.default_model || OTHER_FOLDER;
  $("weights-custom-label").hidden = $("weights").value !== OTHER_FOLDER;
  showMessage("no-model", info.no_model_message || "");
}

function renderServerStatus(loaded) {
  const device = state.info ? state.info.device.toUpperCase() : "";
  const text = loaded ? `${device} · model loaded: ${loaded.name} (${loaded.release}, ${loaded.variant})` : `${device} · no model loaded yet`;
  const status = $("server-status");
  if (status.dataset.text === text) return;
  status.dataset.text = text;
  status.title = loaded ? loaded.summary : "the model loads with the first job and then stays in memory";
  status.innerHTML = '<span class="dot"></span>';
  status.append(text);
}

// ---------------------------------------------------------------------------------------------
// Settings → the job request (the server checks everything; its message is shown as is)

function readSettings() {
  const request = {
    release: $("release").value,
    variant: $("variant").value,
    sparse_ratio: Number($("sparse-ratio").value),
    local_range: Number($("local-range").value),
    color_fix: $("color-fix").value,
    stabilize: $("stabilize").value,
    seed: integerOr($("seed").value, 0),
    format: $("format").value,
    quality: integerOr($("quality").value, 95),
  };
  const folder = $("weights").value === OTHER_FOLDER ? $("weights-custom").value.trim() : $("weights").value;
  if (folder) request.weights = folder;
  if (sizeMode() === "scale") {
    request.scale = $("scale").value === "" ? null : Number($("scale").value);
  } else {
    if ($("width").value) request.width = integerOr($("width").value, null);
    if ($("height").value) request.height = integerOr($("height").value, null);
  }
  if ($("crf").value !== "") request.crf = integerOr($("crf").value, null);
  return request;
}

function integerOr(text, fallback) {
  const n = Number(text);
  return text !== "" && Number.isFinite(n) ? Math.trunc(n) : fallback;
}

function sizeMode() {
  return document.querySelector('input[name="size-mode"]:checked').value;
}

function bindSettings() {
  const form = $("settings");
  form.addEventListener("input", onSettingsChanged);
  form.addEventListener("change", onSettingsChanged);
  form.addEventListener("submit", (e) => { e.preventDefault(); startJobs(); });
  document.querySelectorAll("[data-scale]").forEach((b) => b.addEventListener("click", () => {
    $("scale").value = b.dataset.scale;
    onSettingsChanged();
  }));
}

function onSettingsChanged() {
  const target = sizeMode() === "target";
  $("scale-row").hidden = target;
  $("target-row").hidden = !target;
  $("weights-custom-label").hidden = $("weights").value !== OTHER_FOLDER;
  const format = $("format").value;
  $("crf").disabled = !["h264", "h265", "auto"].includes(format);
  $("quality").disabled = !["jpg", "webp", "auto"].includes(format);
  showMessage("settings-error", "");
  clearTimeout(state.planTimer);
  state.planTimer = setTimeout(refreshPlans, PLAN_DEBOUNCE_MS);
}

function pickedUploads() {
  return [...state.uploads.values()].filter((u) => u.data && u.element.querySelector(".pick").checked);
}

function updateStartButton() {
  const count = pickedUploads().length;
  const button = $("start");
  button.disabled = count === 0;
  button.textContent = count > 1 ? `Upscale ${count} files` : "Upscale";
}

async function startJobs() {
  showMessage("settings-error", "");
  const settings = readSettings();
  for (const upload of pickedUploads()) {
    try {
      await api("POST", "/api/jobs", { ...settings, upload_id: upload.data.id });
      upload.element.querySelector(".pick").checked = false;  // queued: the next click runs only new picks
    } catch (e) {
      addMessage("settings-error", e.message);
    }
  }
  updateStartButton();
  poll();
}

// ---------------------------------------------------------------------------------------------
// Uploads: what each input is, and what it will become

function bindUploads() {
  const input = $("file-input");
  input.addEventListener("change", () => {
    const files = [...input.files];
    input.value = "";  // choosing the same file again uploads it again
    addFiles(files);
  });
  const zone = $("dropzone");
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    addFiles([...e.dataTransfer.files]);
  });
}

async function addFiles(files) {
  showMessage("upload-error", "");
  try {
    await state.infoLoaded;  // the upload limit and the page's settings come with it
  } catch (e) {
    addMessage("upload-error", `cannot upload: the server is not reachable (${e.message})`);
    return;
  }
  for (const file of files) await addFile(file);  // one at a time: the disk and the network are shared
}

async function addFile(file) {
  const limit = state.info.limits.max_upload_bytes;
  if (file.size > limit) {
    addMessage("upload-error", `${file.name}: larger than this server's upload limit of ${formatBytes(limit)}`);
    return;
  }
  const element = uploadElement(file.name);
  const bar = element.querySelector(".bar");
  bar.hidden = false;
  try {
    const data = await sendFile(file, (fraction) => {
      bar.firstElementChild.style.width = `${Math.round(fraction * 100)}%`;
      bar.classList.toggle("indeterminate", fraction >= 1);  // sent: the server is reading it
    });
    element.remove();
    showUpload(data);
    refreshPlans();
  } catch (e) {
    element.remove();
    addMessage("upload-error", e.message);
  }
}

function uploadElement(name) {
  const element = $("upload-template").content.firstElementChild.cloneNode(true);
  element.querySelector(".upload-name").textContent = name;
  element.querySelector(".plan").textContent = "Uploading…";
  element.querySelector(".pick").disabled = true;
  $("uploads").append(element);
  return element;
}

function showUpload(data, picked = true) {
  const shown = state.uploads.get(data.id);
  if (shown) {  // listed by the page's start-up while its own upload of it finished
    if (picked) shown.element.querySelector(".pick").checked = true;
    updateStartButton();
    return;
  }
  const element = uploadElement(data.name);
  element.dataset.uploadId = data.id;
  const pick = element.querySelector(".pick");
  pick.disabled = false;
  pick.checked = picked;
  pick.addEventListener("change", updateStartButton);
  const thumb = element.querySelector(".thumb");
  thumb.src = data.thumbnail_url;
  thumb.alt = `first frame of ${data.name}`;
  const props = element.querySelector(".props");
  props.replaceChildren(...propertyRows(data).map(([label, value, title, layout]) => {
    const item = document.createElement("div");
    if (layout) item.className = layout;
    const dt = document.createElement("dt");
    const dd = document.createElement("dd");
    dt.textContent = label;
    dd.textContent = value;
    if (title) dd.title = title;
    item.append(dt, dd);
    return item;
  }));
  element.querySelector(".plan").textContent = "";
  element.querySelector(".remove").addEventListener("click", () => removeUpload(data.id));
  state.uploads.set(data.id, { data, element });
  updateStartButton();
}

async function removeUpload(id) {
  try {
    await api("DELETE", `/api/uploads/${id}`);
  } catch (e) {
    addMessage("upload-error", e.message);
    return;
  }
  state.uploads.get(id).element.remove();
  state.uploads.delete(id);
  updateStartButton();
}

async function refreshPlans() {
  const settings = readSettings();
  await Promise.all([...state.uploads.values()].map((u) => showPlan(u, settings)));
}

async function showPlan(upload, settings) {
  const line = upload.element.querySelector(".plan");
  try {
    const plan = await api("POST", "/api/plan", { ...settings, upload_id: upload.data.id });
    line.textContent = `→ ${plan.width} × ${plan.height} · ${describeOutput(plan)} · ${plan.output_name}`;
    line.classList.remove("bad");
    upload.element.classList.remove("failed");
  } catch (e) {
    line.textContent = e.message;
    line.classList.add("bad");
    upload.element.classList.add("failed");
  }
}

function describeOutput(plan) {
  const frames = `${plan.frames} frame${plan.frames === 1 ? "" : "s"}`;
  if (plan.output_kind === "image sequence") return `${frames} as images (zip)`;
  return frames;
}

// ---------------------------------------------------------------------------------------------
// Jobs: polled while anything is active

async function poll() {
  clearTimeout(state.pollTimer);
  let active = false;
  try {
    const { jobs, loaded_model } = await api("GET", "/api/jobs");
    renderJobs(jobs);
    renderServerStatus(loaded_model);
    active = jobs.some((j) => ACTIVE.has(j.state));
  } catch (e) {
    $("server-status").textContent = `server not reachable (${e.message})`;
    delete $("server-status").dataset.text;
  }
  state.pollTimer = setTimeout(poll, active ? POLL_ACTIVE_MS : POLL_IDLE_MS);
}

function renderJobs(jobs) {
  const list = $("jobs");
  const seen = new Set();
  jobs.forEach((job, position) => {
    seen.add(job.id);
    let entry = state.jobs.get(job.id);
    if (!entry) {
      entry = { element: jobElement(job.id), data: null };
      state.jobs.set(job.id, entry);
    }
    const finishedNow = entry.data && ACTIVE.has(entry.data.state) && job.state === "done";
    entry.data = job;
    updateJob(entry.element, job);
    if (list.children[position] !== entry.element) list.insertBefore(entry.element, list.children[position] || null);
    if (finishedNow && !player.jobId) openCompare(job.id);
  });
  for (const [id, entry] of state.jobs) {
    if (!seen.has(id)) {
      entry.element.remove();
      state.jobs.delete(id);
      if (player.jobId === id) closeCompare();
    }
  }
  $("jobs-empty").hidden = jobs.length > 0;
  showProgressInTitle(jobs.find((j) => j.state === "running"));
}

// The tab shows how far the running job is, for people who switch to other tabs meanwhile
function showProgressInTitle(job) {
  const percent = job && job.progress.total ? Math.floor((100 * job.progress.done) / job.progress.total) : null;
  document.title = percent === null ? "FlashVSR" : `${percent}% · FlashVSR`;
}

function jobElement(id) {
  const element = $("job-template").content.firstElementChild.cloneNode(true);
  element.dataset.jobId = id;
  element.querySelector(".cancel").addEventListener("click", () => jobAction("POST", `/api/jobs/${id}/cancel`));
  element.querySelector(".remove").addEventListener("click", () => jobAction("DELETE", `/api/jobs/${id}`));
  element.querySelector(".compare-button").addEventListener("click", async () => {
    await openCompare(id);
    $("compare-card").scrollIntoView({ behavior: "smooth", block: "start" });
  });
  return element;
}

async function jobAction(method, path) {
  try {
    await api(method, path);
  } catch (e) {
    addMessage("settings-error", e.message);
  }
  poll();
}

function updateJob(element, job) {
  const { progress } = job;
  element.className = `job ${job.state}`;
  element.querySelector(".job-title").textContent = `${job.input.name} → ${job.output.name}`;
  const badge = element.querySelector(".badge");
  badge.className = `badge ${job.state}`;
  badge.textContent = job.state === "queued" && job.queue_position ? `Queued #${job.queue_position}` : STATE_LABELS[job.state];
  const bar = element.querySelector(".bar");
  const starting = job.state === "loading" || (job.state === "running" && progress.done === 0);
  bar.classList.toggle("indeterminate", starting);
  bar.firstElementChild.style.width = starting ? "" : `${progress.total ? (100 * progress.done) / progress.total : 0}%`;
  element.querySelector(".job-progress").textContent = progressText(job);
  element.querySelector(".job-detail").textContent = detailText(job);
  const error = element.querySelector(".job-error");
  error.textContent = job.error || job.warnings.join("\n");
  error.hidden = !job.error && !job.warnings.length;
  const active = ACTIVE.has(job.state);
  const download = element.querySelector(".download");
  download.hidden = job.state !== "done";
  if (job.result) download.href = job.result.download_url;
  element.querySelector(".compare-button").hidden = job.state !== "done";
  const cancel = element.querySelector(".cancel");
  cancel.hidden = !active;
  cancel.disabled = job.cancel_requested;
  cancel.textContent = job.cancel_requested ? "Cancelling…" : "Cancel";
  element.querySelector(".remove").hidden = active;
}

function progressText(job) {
  const { done, total, fps, eta_s, elapsed_s } = job.progress;
  const frames = `${done} / ${total} frames`;
  switch (job.state) {
    case "queued": return job.queue_position > 1 ? `Waiting: ${job.queue_position - 1} queued job(s) ahead` : "Waiting: next in line";
    case "loading": return "Loading the model (once; later jobs reuse it)…";
    case "running":
      if (done === 0) return `0 / ${total} frames · starting (the first frames take longest)`;
      return `${frames} · ${fps.toFixed(1)} fps · ${formatEta(eta_s)} left`;
    case "done": return `${doneText(job.result, elapsed_s)} · ${formatBytes(job.result.bytes)}`;
    case "cancelled": return `Cancelled at ${frames}; nothing was kept`;
    default: return `Stopped at ${frames}`;
  }
}

function doneText(result, elapsed) {
  if (result.frames === 1) return `1 frame in ${elapsed.toFixed(1)} s`;
  return `${result.frames} frames in ${formatEta(elapsed)} (${result.fps.toFixed(1)} fps)`;
}

function detailText(job) {
  const o = job.options;
  const parts = [`${job.input.width} × ${job.input.height} → ${job.output.width} × ${job.output.height}`];
  parts.push(FORMAT_LABELS[job.output.format] || job.output.format);
  parts.push(`${o.variant} decoder, colour fix ${o.color_fix}, stabilizer ${o.stabilize}, seed ${o.seed}`);
  if (job.model) parts.push(job.model.reused ? "model already loaded" : `model loaded in ${job.model.load_seconds.toFixed(1)} s`);
  if (job.result && job.result.audio_streams) parts.push(`audio copied (${job.result.audio_streams})`);
  return parts.join(" · ");
}

// ---------------------------------------------------------------------------------------------
// Before / after: a synchronised slider (or side-by-side) player and zoomed crops

const player = {
  jobId: null, mode: "video", before: null, after: null, frames: 1, fps: 25, index: 0,
  split: 0.5, crop: { u: 0.5, v: 0.5 }, raf: null,
};

function bindPlayer() {
  $("prev-frame").innerHTML = ICONS.prev;
  $("next-frame").innerHTML = ICONS.next;
  setPlaying(false);
  $("mode-slider").addEventListener("click", () => setLayout("slider"));
  $("mode-side").addEventListener("click", () => setLayout("side"));
  $("zoom").addEventListener("change", drawCrops);
  $("sound").addEventListener("change", () => { if (player.mode === "video") player.after.muted = !$("sound").checked; });
  $("play").addEventListener("click", togglePlay);
  $("prev-frame").addEventListener("click", () => stepFrames(-1));
  $("next-frame").addEventListener("click", () => stepFrames(1));
  $("seek").addEventListener("input", () => showFrame(Number($("seek").value)));
  bindSplit();
  $("stage").addEventListener("click", chooseCrop);
}

async function openCompare(jobId) {
  let compare;
  try {
    compare = await api("GET", `/api/jobs/${jobId}/compare`);
  } catch (e) {
    addMessage("settings-error", e.message);
    return;
  }
  closeCompare();
  const job = state.jobs.get(jobId).data;
  Object.assign(player, { jobId, compare, mode: compare.mode, frames: compare.frames, fps: compare.fps || 25, index: 0 });
  $("compare-name").textContent = `${job.input.name} → ${job.output.name}`;
  const stage = $("stage");
  stage.style.setProperty("--aspect", `${compare.after.width} / ${compare.after.height}`);
  stage.style.setProperty("--ratio", compare.after.width / compare.after.height);
  if (compare.mode === "video") mountVideos(compare);
  else mountFrames(compare);
  $("seek").max = Math.max(0, compare.frames - 1);
  $("seek").value = 0;
  $("transport").hidden = compare.frames <= 1;
  $("play").hidden = $("sound-label").hidden = compare.mode !== "video";
  setSplit(player.split);
  $("compare-card").hidden = false;
  updateTime();
}

function closeCompare() {
  cancelAnimationFrame(player.raf);
  for (const element of [player.before, player.after]) {
    if (element && element.tagName === "VIDEO") { element.pause(); element.removeAttribute("src"); element.load(); }
    if (element) element.remove();
  }
  Object.assign(player, { jobId: null, before: null, after: null });
  $("compare-card").hidden = true;
}

function mountVideos(compare) {
  player.before = makeVideo(compare.before.file_url, true);
  player.after = makeVideo(compare.after.file_url, !$("sound").checked);
  $("before-pane").prepend(player.before);
  $("after-pane").prepend(player.after);
  for (const video of [player.before, player.after]) {
    video.addEventListener("seeked", drawCrops);
    video.addEventListener("loadeddata", drawCrops);
    video.addEventListener("error", () => switchToFrames());  // the browser cannot play it after all
  }
  player.after.addEventListener("ended", () => { player.before.pause(); setPlaying(false); });
}

function makeVideo(url, muted) {
  const video = document.createElement("video");
  Object.assign(video, { src: url, muted, preload: "auto", playsInline: true });
  return video;
}

function mountFrames(compare) {
  player.before = makeImage();
  player.after = makeImage();
  $("before-pane").prepend(player.before);
  $("after-pane").prepend(player.after);
  showFrame(0);
}

function makeImage() {
  const image = document.createElement("img");
  image.alt = "";
  image.addEventListener("load", drawCrops);
  return image;
}

function switchToFrames() {
  if (player.mode !== "video") return;
  const { compare, jobId } = player;
  closeCompare();
  Object.assign(player, { jobId, compare, mode: "frames", frames: compare.frames, index: 0 });
  mountFrames(compare);
  $("play").hidden = $("sound-label").hidden = true;
  $("compare-card").hidden = false;
}

function frameUrl(side, index) {
  return player.compare[side].frame_url.replace("{index}", index);
}

function showFrame(index) {
  player.index = Math.min(Math.max(0, index), player.frames - 1);
  if (player.mode === "video") {
    const time = (player.index + 0.5) / player.fps;  // the middle of the frame: no rounding onto its neighbour
    player.after.currentTime = time;
    player.before.currentTime = time;
  } else {
    player.before.src = frameUrl("before", player.index);
    player.after.src = frameUrl("after", player.index);
  }
  $("seek").value = player.index;
  updateTime();
}

function stepFrames(delta) {
  if (player.mode === "video") pauseBoth();
  showFrame(player.index + delta);
}

function togglePlay() {
  const { before, after } = player;
  if (after.paused) {
    if (after.ended) showFrame(0);
    before.currentTime = after.currentTime;
    Promise.all([after.play(), before.play()]).catch(() => setPlaying(false));
    setPlaying(true);
    followPlayback();
  } else {
    pauseBoth();
  }
}

function pauseBoth() {
  player.after.pause();
  player.before.pause();
  player.before.currentTime = player.after.currentTime;
  setPlaying(false);
}

function setPlaying(playing) {
  $("play").innerHTML = playing ? ICONS.pause : ICONS.play;
  $("play").setAttribute("aria-label", playing ? "Pause" : "Play");
}

// While playing: keep "before" on "after"'s clock, move the seek bar, redraw the crops
function followPlayback() {
  const { before, after } = player;
  if (!after || after.paused) return;
  if (Math.abs(before.currentTime - after.currentTime) > SYNC_TOLERANCE_S) before.currentTime = after.currentTime;
  player.index = Math.min(player.frames - 1, Math.floor(after.currentTime * player.fps));
  $("seek").value = player.index;
  updateTime();
  drawCrops();
  player.raf = requestAnimationFrame(followPlayback);
}

function updateTime() {
  let text = `frame ${player.index + 1} / ${player.frames}`;
  if (player.mode === "video" && player.after) text += ` · ${formatClock(player.after.currentTime)}`;
  $("time").textContent = text;
}

function setLayout(layout) {
  $("stage").className = `stage ${layout}`;
  $("mode-slider").classList.toggle("active", layout === "slider");
  $("mode-side").classList.toggle("active", layout === "side");
  $("mode-slider").setAttribute("aria-pressed", layout === "slider");
  $("mode-side").setAttribute("aria-pressed", layout === "side");
  drawCrops();
}

function bindSplit() {
  const divider = $("divider");
  const follow = (e) => {
    const rect = $("stage").getBoundingClientRect();
    setSplit((e.clientX - rect.left) / rect.width);
  };
  divider.addEventListener("pointerdown", (e) => {
    divider.setPointerCapture(e.pointerId);
    divider.addEventListener("pointermove", follow);
  });
  divider.addEventListener("pointerup", () => divider.removeEventListener("pointermove", follow));
  divider.addEventListener("click", (e) => e.stopPropagation());  // not a crop choice
  divider.addEventListener("keydown", (e) => {
    if (e.key === "ArrowLeft") setSplit(player.split - SPLIT_KEY_STEP);
    if (e.key === "ArrowRight") setSplit(player.split + SPLIT_KEY_STEP);
  });
}

function setSplit(fraction) {
  player.split = Math.min(1, Math.max(0, fraction));
  $("stage").style.setProperty("--split", `${player.split * 100}%`);
  $("divider").setAttribute("aria-valuenow", Math.round(player.split * 100));
}

function chooseCrop(e) {
  const pane = e.target.closest(".pane") || $("stage");
  const rect = ($("stage").classList.contains("side") ? pane : $("stage")).getBoundingClientRect();
  player.crop = { u: (e.clientX - rect.left) / rect.width, v: (e.clientY - rect.top) / rect.height };
  drawCrops();
}

function naturalSize(element) {
  return element.tagName === "VIDEO" ? [element.videoWidth, element.videoHeight] : [element.naturalWidth, element.naturalHeight];
}

// The same region of both pictures, enlarged without smoothing: real pixels, side by side
function drawCrops() {
  const { before, after } = player;
  if (!before || !after) return;
  const [aw, ah] = naturalSize(after);
  const [bw, bh] = naturalSize(before);
  if (!aw || !bw) return;
  const side = Math.min(CROP_PX / Number($("zoom").value), aw, ah);
  const x = clamp(player.crop.u * aw - side / 2, 0, aw - side);
  const y = clamp(player.crop.v * ah - side / 2, 0, ah - side);
  drawRegion($("crop-after"), after, x, y, side, side);
  drawRegion($("crop-before"), before, (x * bw) / aw, (y * bh) / ah, (side * bw) / aw, (side * bh) / ah);
  Object.assign($("crop-box").style, {
    left: `${(100 * x) / aw}%`, top: `${(100 * y) / ah}%`, width: `${(100 * side) / aw}%`, height: `${(100 * side) / ah}%`,
  });
}

function drawRegion(canvas, source, x, y, w, h) {
  const context = canvas.getContext("2d");
  context.imageSmoothingEnabled = false;
  context.clearRect(0, 0, canvas.width, canvas.height);
  context.drawImage(source, x, y, w, h, 0, 0, canvas.width, canvas.height);
}

function clamp(value, low, high) {
  return Math.min(Math.max(value, low), Math.max(low, high));
}

start();
