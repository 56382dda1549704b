// The roadsigns page: upload photos and videos, follow each job until done (a video with a
// progress bar over its frames), draw the signs found (a video's tracks, with a timeline),
// and reopen past jobs by URL (#/jobs/<id>). Talks to the gateway only through api.js.
// Every value from the API reaches the DOM through textContent or attributes, never HTML.

import {
  ApiError,
  getJob,
  hasApiKey,
  listJobs,
  newIdempotencyKey,
  setApiKey,
  submitPhoto,
} from "./api.js";

const $ = (selector, root = document) => root.querySelector(selector);

const STATUS_TEXT = {
  waiting: "Waiting to upload",
  uploading: "Uploading",
  loading: "Loading",
  queued: "Queued: waiting for a detector",
  detecting: "Detecting and classifying signs",
  reading: "Reading the text on the signs",
  done: "Done",
  failed: "Failed",
  rejected: "Rejected",
  missing: "Not found",
};
const STEPS = ["queued", "detecting", "reading", "done"];
const TIMING_NAMES = {
  queue_wait_ms: "Waiting in queue",
  detect_ms: "Detection",
  classify_ms: "Classification",
  ocr_ms: "Text reading",
  total_ms: "Total",
};
const UPLOADS_AT_ONCE = 2;
const HISTORY_PAGE = 15;

const cards = new Map(); // job id -> card, for every card that has an id
const allCards = new Set(); // every card on the page, with or without an id yet
let nextCardNumber = 0;

// ---------- small formatting helpers ----------

const percent = (x) => `${Math.round(x * 100)}%`;
const seconds = (s) => `${s.toFixed(1)} s`;
const duration = (ms) => (ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(ms < 10000 ? 2 : 1)} s`);
const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;
const jobTitle = (job) => job.filename || `Job ${job.id.slice(0, 8)}`;
const jobHref = (id) => `#/jobs/${encodeURIComponent(id)}`;

function since(iso) {
  const seconds = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  if (seconds < 60) return `${Math.round(seconds)} s ago`;
  if (seconds < 3600) return `${Math.round(seconds / 60)} min ago`;
  return new Date(iso).toLocaleString();
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") node.className = value;
    else if (name === "style") Object.assign(node.style, value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  node.append(...children.filter((c) => c !== null && c !== undefined && c !== false));
  return node;
}

// ---------- job cards ----------

function createCard(title) {
  const li = $("#job-template").content.firstElementChild.cloneNode(true);
  const number = ++nextCardNumber;
  const titleId = `job-title-${number}`;
  const card = {
    li,
    id: null,
    status: null,
    timer: null,
    delay: 500,
    createdAt: Date.now(),
    title: $(".job-title", li),
    link: $(".job-link", li),
    statusLine: $(".job-status", li),
    error: $(".job-error", li),
    result: $(".job-result", li),
    progress: $(".job-progress", li),
  };
  card.title.id = titleId;
  card.title.textContent = title;
  $("article", li).setAttribute("aria-labelledby", titleId);
  card.link.hidden = true;
  $(".job-close", li).setAttribute("aria-label", `Close ${title}`);
  $(".job-close", li).addEventListener("click", () => closeCard(card));
  $("#job-list").prepend(li);
  allCards.add(card);
  refreshEmptyState();
  return card;
}

function setCardId(card, job) {
  if (card.closed) return;
  card.id = job.id;
  card.li.dataset.jobId = job.id;
  card.link.href = jobHref(job.id);
  card.link.hidden = false;
  card.link.setAttribute("aria-label", `Link to ${jobTitle(job)}`);
  cards.set(job.id, card);
}

function closeCard(card) {
  clearTimeout(card.timer);
  card.closed = true;
  card.li.remove();
  allCards.delete(card);
  if (card.id) cards.delete(card.id);
  if (card.id && routedJobId() === card.id) history.replaceState(null, "", location.pathname);
  refreshEmptyState();
}

function refreshEmptyState() {
  const any = $("#job-list").children.length > 0;
  $("#jobs-empty").hidden = any;
  $("#clear-jobs").hidden = !any;
}

/** Show a status; statuses only move forward, so a stale answer never moves a card back. */
function setStatus(card, status, extra = "") {
  const rank = (s) => STEPS.indexOf(s);
  if (card.status && rank(status) >= 0 && rank(card.status) > rank(status)) return;
  card.status = status;
  card.li.dataset.status = status;
  card.statusLine.textContent = extra ? `${STATUS_TEXT[status]}: ${extra}` : STATUS_TEXT[status];
  // A failed job failed at the last stage it was seen in (the first, when opened already failed).
  const reached = status === "failed" ? rank(card.lastRunning || "queued") : rank(status);
  for (const step of card.li.querySelectorAll(".steps li")) {
    const i = rank(step.dataset.step);
    if (status === "done" || i < reached) step.dataset.state = "done";
    else if (i === reached) step.dataset.state = status === "failed" ? "failed" : "current";
    else step.dataset.state = "todo";
  }
  if (rank(status) >= 0 && status !== "done") card.lastRunning = status;
}

function showError(card, message) {
  card.error.textContent = message;
  card.error.hidden = false;
}

// ---------- following a job ----------

function follow(card, job) {
  setCardId(card, job);
  applyJob(card, job);
}

function applyJob(card, job) {
  if (card.closed) return;
  card.li.dataset.kind = job.kind || "photo";
  showProgress(card, job);
  if (job.status === "done") {
    if (job.kind === "video") {
      setStatus(card, "done", `${plural(job.tracks.length, "sign")} tracked`);
      renderVideo(card, job);
    } else {
      setStatus(card, "done", `${plural(job.signs.length, "sign")} found`);
      renderResult(card, job);
    }
    refreshHistorySoon();
  } else if (job.status === "failed") {
    setStatus(card, "failed");
    showError(card, `The job failed: ${job.error || "no reason was recorded"}`);
    refreshHistorySoon();
  } else {
    const waited = Math.round((Date.now() - Date.parse(job.created_at)) / 1000);
    setStatus(card, job.status, waited >= 2 ? `${waited} s so far` : "");
    schedulePoll(card);
  }
}

/** A running video's frames analysed so far, as a bar; gone once the job has finished. */
function showProgress(card, job) {
  const progress = job.progress;
  const box = card.progress;
  if (!progress || job.status === "done" || job.status === "failed") {
    box.hidden = true;
    return;
  }
  const total = Math.max(progress.frames_total, progress.frames_done);
  // Frames only move forward: a stale answer never moves the bar back.
  const done = Math.max(progress.frames_done, Number(box.dataset.done || 0));
  const bar = $(".progress-bar", box);
  bar.max = Math.max(total, 1);
  bar.value = done;
  bar.setAttribute("aria-label", `Frames analysed of ${jobTitle(job)}`);
  box.dataset.done = done;
  box.dataset.total = total;
  $(".progress-text", box).textContent = total
    ? `${done} of ${plural(total, "frame")} analysed (${percent(done / total)})`
    : "Counting the frames";
  box.hidden = false;
}

function schedulePoll(card) {
  clearTimeout(card.timer);
  card.timer = setTimeout(() => poll(card), card.delay);
  card.delay = Math.min(card.delay * 1.3, 3000);
}

async function poll(card) {
  if (card.closed) return;
  try {
    applyJob(card, await getJob(card.id));
  } catch (err) {
    if (err instanceof ApiError && err.status >= 400 && err.status < 500) {
      askForKeyIf(err);
      setStatus(card, "missing");
      showError(card, err.message);
      return;
    }
    // The gateway restarting or the network dropping: keep the job, keep trying.
    card.statusLine.textContent = `${STATUS_TEXT[card.status] || "Waiting"}: ${err.message}; retrying…`;
    card.delay = Math.max(card.delay, 2000);
    schedulePoll(card);
  }
}

// ---------- drawing a finished job ----------

function renderResult(card, job) {
  if (card.rendered) return;
  card.rendered = true;
  const photo = $(".photo-img", card.li);
  const frame = $(".photo-frame", card.li);
  const boxes = $(".boxes", card.li);
  const width = job.image_width;
  const height = job.image_height;

  photo.width = width;
  photo.height = height;
  photo.alt = `${jobTitle(job)}, with ${plural(job.signs.length, "sign")} marked`;
  photo.src = job.links.image; // signed by the gateway, so no key in the URL
  $(".photo-caption", card.li).append(
    job.signs.length
      ? `${plural(job.signs.length, "sign")} found; each box is numbered as in the list. `
      : "No signs were found in this photo. ",
    el("a", { href: job.links.image, target: "_blank", rel: "noopener" }, "Full-size photo"),
  );

  job.signs.forEach((sign, i) => {
    const [x1, y1, x2, y2] = sign.bbox;
    const label = el(
      "span",
      { class: "box-label" },
      el("span", { class: "box-n" }, String(i + 1)),
      el("span", { class: "box-name" }, signName(sign)),
      sign.text ? el("span", { class: "box-text" }, `“${sign.text}”`) : null,
      el("span", { class: "box-conf" }, percent(sign.confidence)),
    );
    const box = el(
      "div",
      {
        class: `box cat-${sign.category}`,
        "data-index": i,
        "data-class-id": sign.class_id,
        "data-class-name": sign.class_name,
        "data-class-source": sign.class_source,
        "data-text": sign.text,
        "data-confidence": sign.confidence,
        "data-bbox": sign.bbox.join(","),
        style: {
          left: `${(100 * x1) / width}%`,
          top: `${(100 * y1) / height}%`,
          width: `${(100 * (x2 - x1)) / width}%`,
          height: `${(100 * (y2 - y1)) / height}%`,
        },
      },
      label,
    );
    boxes.append(box);
  });

  const list = $(".signs", card.li);
  job.signs.forEach((sign, i) => list.append(signItem(sign, i)));
  if (!job.signs.length) list.append(el("li", { class: "empty" }, "None."));
  linkHighlights(card.li);

  renderTimingsAndVersions(card, job);

  card.result.hidden = false;
  new ResizeObserver(() => placeLabels(frame)).observe(frame);
  photo.addEventListener("load", () => placeLabels(frame));
}

function renderTimingsAndVersions(card, job) {
  renderTimings($(".timings", card.li), job.timings_ms || {});
  const versions = $(".versions-list", card.li);
  for (const [name, version] of Object.entries(job.model_versions || {})) {
    versions.append(el("div", {}, el("dt", {}, name), el("dd", {}, version)));
  }
  $(".versions", card.li).hidden = !versions.children.length;
}

/** The sign's name; "(read)" where its number named it, not the classifier ("speed limit 40 (read)"). */
function signName(sign) {
  return sign.class_source === "reading" ? `${sign.class_name} (read)` : sign.class_name;
}

/** Which class, and where the name came from: the classifier, the number read, or only the shape. */
function classLabel(sign) {
  if (sign.class_id === null || sign.class_id === undefined) {
    return sign.class_source === "reading" ? "number read, no class has it" : "none of the 43 classes";
  }
  return sign.class_source === "reading" ? `class ${sign.class_id}, from its number` : `class ${sign.class_id}`;
}

function signItem(sign, i) {
  let reading;
  if (sign.text) {
    const verdict =
      sign.text_matches_class === true
        ? el("span", { class: "match yes" }, "agrees with the class")
        : sign.text_matches_class === false
          ? el("span", { class: "match no" }, "does not agree with the class")
          : null;
    reading = el(
      "p",
      { class: "sign-text" },
      "Text read: ",
      el("q", {}, sign.text),
      ` (${Math.round(sign.text_confidence)}% sure)`, // Tesseract's 0..100, unlike `confidence` (0..1)
      verdict ? " · " : null,
      verdict,
    );
  } else {
    reading = el("p", { class: "sign-text none" }, "No text read");
  }
  return el(
    "li",
    { class: "sign", tabindex: 0, "data-index": i, "data-class-id": sign.class_id },
    sign.crop_url
      ? el("img", { class: "crop", src: sign.crop_url, alt: `Crop of sign ${i + 1}`, width: 64, height: 64 })
      : el("span", { class: "crop none" }, "no crop"),
    el(
      "div",
      { class: "sign-body" },
      el("p", { class: "sign-name" }, el("span", { class: "sign-n" }, String(i + 1)), signName(sign)),
      el(
        "p",
        { class: "sign-meta" },
        el("span", { class: `cat cat-${sign.category}` }, sign.category),
        ` ${classLabel(sign)} · ${percent(sign.confidence)} sure`,
      ),
      reading,
    ),
  );
}

// ---------- drawing a finished video ----------

function renderVideo(card, job) {
  if (card.rendered) return;
  card.rendered = true;
  const tracks = job.tracks || [];
  $(".photo", card.li).hidden = true;
  $(".video", card.li).hidden = false;
  $(".signs-title", card.li).textContent = "Signs tracked";
  $(".video-summary", card.li).textContent =
    `${seconds(job.duration_s)} of video, ${plural(job.frames_analysed, "frame")} analysed: ` +
    (tracks.length ? `${plural(tracks.length, "sign")} tracked, numbered as in the list.` : "no sign was tracked.");
  renderTimeline($(".timeline", card.li), tracks, job.duration_s);

  const list = $(".signs", card.li);
  tracks.forEach((track, i) => list.append(trackItem(track, i)));
  if (!tracks.length) list.append(el("li", { class: "empty" }, "None."));
  linkHighlights(card.li);

  renderTimingsAndVersions(card, job);
  card.result.hidden = false;
}

/** Seconds between the axis' ticks: about 4 to 8 over the video. */
function tickStep(total) {
  return [0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600].find((step) => total / step <= 8) || 600;
}

/** A row per track over the video's length: a bar from first to last seen, a mark at its best frame. */
function renderTimeline(root, tracks, total) {
  const rows = $(".timeline-rows", root);
  const axis = $(".timeline-axis", root);
  const span = Math.max(total, 1e-6);
  const fraction = (s) => Math.min(Math.max(s, 0), span) / span;
  const at = (s) => `${100 * fraction(s)}%`;
  tracks.forEach((track, i) => {
    const name = track.text ? `${track.class_name} “${track.text}”` : track.class_name;
    const bar = el("span", {
      class: `tl-bar cat-${track.category}`,
      "data-first": track.first_seen_s,
      "data-last": track.last_seen_s,
      style: {
        left: at(track.first_seen_s),
        width: `${100 * (fraction(track.last_seen_s) - fraction(track.first_seen_s))}%`,
      },
    });
    const best = el("span", { class: "tl-best", "data-best": track.best_frame_s, style: { left: at(track.best_frame_s) } });
    rows.append(
      el(
        "li",
        {
          class: "tl-row",
          "data-index": i,
          "aria-label":
            `Sign ${i + 1}, ${name}: seen from ${seconds(track.first_seen_s)} to ${seconds(track.last_seen_s)}, ` +
            `sharpest at ${seconds(track.best_frame_s)}`,
        },
        el("span", { class: "sign-n", "aria-hidden": "true" }, String(i + 1)),
        el("span", { class: "tl-lane", "aria-hidden": "true" }, bar, best),
      ),
    );
  });
  const step = tickStep(span);
  for (let t = 0; t <= span + 1e-9; t += step) {
    axis.append(el("span", { class: "tl-tick", style: { left: at(t) } }, `${Number(t.toFixed(1))} s`));
  }
}

function trackItem(track, i) {
  const reading = track.text
    ? el("p", { class: "sign-text" }, "Text read: ", el("q", {}, track.text))
    : el("p", { class: "sign-text none" }, "No text read");
  return el(
    "li",
    { class: "sign vtrack", tabindex: 0, "data-index": i, "data-class-id": track.class_id, "data-track-id": track.track_id },
    track.crop_url
      ? el("img", { class: "crop", src: track.crop_url, alt: `Crop of sign ${i + 1}`, width: 64, height: 64 })
      : el("span", { class: "crop none" }, "no crop"),
    el(
      "div",
      { class: "sign-body" },
      el("p", { class: "sign-name" }, el("span", { class: "sign-n" }, String(i + 1)), track.class_name),
      el(
        "p",
        { class: "sign-meta" },
        el("span", { class: `cat cat-${track.category}` }, track.category),
        ` ${track.class_id === null || track.class_id === undefined ? "none of the 43 classes" : `class ${track.class_id}`}`,
        ` · ${percent(track.confidence)} sure`,
      ),
      reading,
      el(
        "p",
        { class: "sign-seen" },
        `Seen ${seconds(track.first_seen_s)} – ${seconds(track.last_seen_s)} · ${plural(track.frames, "frame")}` +
          ` · sharpest at ${seconds(track.best_frame_s)}`,
      ),
    ),
  );
}

/** Hovering or focusing a sign in the list lights up its box (or timeline row), and the other way round. */
function linkHighlights(root) {
  const set = (index, on) => {
    for (const node of root.querySelectorAll(`[data-index="${index}"]`)) node.classList.toggle("hl", on);
  };
  for (const node of root.querySelectorAll(".sign, .box, .tl-row")) {
    const index = node.dataset.index;
    node.addEventListener("mouseenter", () => set(index, true));
    node.addEventListener("mouseleave", () => set(index, false));
    node.addEventListener("focusin", () => set(index, true));
    node.addEventListener("focusout", () => set(index, false));
  }
}

function renderTimings(dl, timings) {
  const keys = Object.keys(timings);
  const known = Object.keys(TIMING_NAMES).filter((k) => k in timings && k !== "total_ms");
  const others = keys.filter((k) => !(k in TIMING_NAMES)).sort();
  const ordered = [...known, ...others, ...(keys.includes("total_ms") ? ["total_ms"] : [])];
  const longest = Math.max(1, ...keys.map((k) => timings[k]));
  for (const key of ordered) {
    const name = TIMING_NAMES[key] || key.replace(/_ms$/, "").replaceAll("_", " ");
    dl.append(
      el(
        "div",
        { class: `timing${key === "total_ms" ? " total" : ""}`, "data-key": key },
        el("dt", {}, name),
        el(
          "dd",
          {},
          el("span", { class: "track" }, el("span", { class: "bar", style: { width: `${(100 * timings[key]) / longest}%` } })),
          el("span", { class: "ms" }, duration(timings[key])),
        ),
      ),
    );
  }
  if (!ordered.length) dl.append(el("div", {}, el("dt", {}, "No timings recorded")));
}

/**
 * Labels sit above their box by default. Where that would cover another label or box
 * (signs stacked on one post), a label moves below, beside, or further out, so every
 * label stays readable; failing that it may cover boxes but never another label.
 */
function placeLabels(frame) {
  const frameWidth = frame.clientWidth;
  const frameHeight = frame.clientHeight;
  if (!frameWidth || !frameHeight) return;
  const hit = (a, b) => a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h;
  const boxes = [...frame.querySelectorAll(".box")].sort((a, b) => a.offsetTop - b.offsetTop);
  const rects = boxes.map((b) => ({ x: b.offsetLeft, y: b.offsetTop, w: b.offsetWidth, h: b.offsetHeight }));
  const placed = [];
  boxes.forEach((box, i) => {
    const label = $(".box-label", box);
    const { x: bx, y: by, w: bw, h: bh } = rects[i];
    const w = label.offsetWidth;
    const h = label.offsetHeight;
    const fit = (x, y) => ({
      x: Math.min(Math.max(0, x), Math.max(0, frameWidth - w)),
      y: Math.min(Math.max(0, y), Math.max(0, frameHeight - h)),
      w,
      h,
    });
    const candidates = [fit(bx, by - h), fit(bx, by + bh), fit(bx + bw + 2, by), fit(bx - w - 2, by)];
    for (let k = 1; k < 8; k++) candidates.push(fit(bx, by - (k + 1) * h - k), fit(bx, by + bh + k * (h + 1)));
    const others = rects.filter((_, j) => j !== i);
    const spot =
      candidates.find((r) => !placed.some((p) => hit(r, p)) && !others.some((o) => hit(r, o))) ||
      candidates.find((r) => !placed.some((p) => hit(r, p))) ||
      candidates[0];
    placed.push(spot);
    // The label is a child of its box: convert frame coordinates to the box's own.
    label.style.left = `${spot.x - bx - box.clientLeft}px`;
    label.style.top = `${spot.y - by - box.clientTop}px`;
  });
}

// ---------- uploading ----------

const uploadQueue = [];
let uploadsRunning = 0;

function uploadFiles(fileList) {
  const files = [...fileList];
  if (!files.length) return;
  pageMessage("");
  for (const file of files) {
    const card = createCard(file.name || "pasted image");
    setStatus(card, "waiting");
    uploadQueue.push({ file, card });
  }
  pumpUploads();
}

function pumpUploads() {
  while (uploadsRunning < UPLOADS_AT_ONCE && uploadQueue.length) {
    const { file, card } = uploadQueue.shift();
    if (card.closed) continue;
    uploadsRunning++;
    setStatus(card, "uploading");
    uploadWithRetries(file, card)
      .then((job) => {
        follow(card, job);
        refreshHistorySoon();
      })
      .catch((err) => {
        askForKeyIf(err);
        setStatus(card, "rejected");
        showError(card, `This file was not accepted: ${err.message}`);
      })
      .finally(() => {
        uploadsRunning--;
        pumpUploads();
      });
  }
}

/** A dropped connection is retried with the same Idempotency-Key, so it never makes two jobs. */
async function uploadWithRetries(file, card) {
  const key = newIdempotencyKey();
  for (let attempt = 1; ; attempt++) {
    try {
      return await submitPhoto(file, key, (fraction) => setStatus(card, "uploading", percent(fraction)));
    } catch (err) {
      if (!(err instanceof ApiError) || err.status !== 0 || attempt >= 3) throw err;
      setStatus(card, "uploading", `${err.message}; trying again`);
      await new Promise((resolve) => setTimeout(resolve, 1000 * attempt));
    }
  }
}

function pageMessage(text) {
  const node = $("#page-message");
  node.textContent = text;
  node.hidden = !text;
}

function setUpDropping() {
  const input = $("#file-input");
  const zone = $("#dropzone");
  zone.addEventListener("click", () => input.click());
  input.addEventListener("change", () => {
    uploadFiles(input.files);
    input.value = ""; // choosing the same file again must upload it again
  });

  // Dropping anywhere on the page works: a near miss must not navigate away to the file.
  let depth = 0;
  const hasFiles = (event) => [...(event.dataTransfer?.types || [])].includes("Files");
  document.addEventListener("dragenter", (event) => {
    if (!hasFiles(event)) return;
    depth++;
    document.body.classList.add("dragging");
  });
  document.addEventListener("dragleave", () => {
    depth = Math.max(0, depth - 1);
    if (!depth) document.body.classList.remove("dragging");
  });
  document.addEventListener("dragover", (event) => {
    if (!hasFiles(event)) return;
    event.preventDefault();
    event.dataTransfer.dropEffect = "copy";
  });
  document.addEventListener("drop", (event) => {
    depth = 0;
    document.body.classList.remove("dragging");
    if (!event.dataTransfer?.files.length) return;
    event.preventDefault();
    uploadFiles(event.dataTransfer.files);
  });
  document.addEventListener("paste", (event) => {
    const files = [...(event.clipboardData?.files || [])];
    if (files.length) uploadFiles(files);
  });
}

// ---------- API key, for gateways that require one ----------

function askForKeyIf(err) {
  if (!(err instanceof ApiError) || (err.status !== 401 && err.status !== 403)) return;
  const form = $("#key-form");
  $("#key-reason").textContent = err.message;
  form.hidden = false;
}

function setUpKeyForm() {
  const form = $("#key-form");
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    setApiKey($("#key-input").value);
    $("#key-input").value = "";
    form.hidden = true;
    pageMessage(hasApiKey() ? "" : "No API key is set.");
    loadHistory(false);
    openRoutedJob();
  });
}

// ---------- history and routing ----------

const historyState = { offset: 0, total: 0, timer: null };

async function loadHistory(append = false) {
  const status = $("#history-status");
  const list = $("#history-list");
  const offset = append ? historyState.offset : 0;
  try {
    const page = await listJobs(HISTORY_PAGE, offset);
    if (!append) list.replaceChildren();
    for (const job of page.items) list.append(historyItem(job));
    historyState.offset = offset + page.items.length;
    historyState.total = page.total;
    status.textContent = page.total ? `${plural(page.total, "job")} in all` : "No jobs yet.";
    $("#history-more").hidden = historyState.offset >= page.total;
    markCurrent();
  } catch (err) {
    askForKeyIf(err);
    status.textContent = `The history could not be loaded: ${err.message}`;
  }
}

function historyItem(job) {
  return el(
    "li",
    { "data-job-id": job.id, "data-status": job.status },
    el(
      "a",
      { href: jobHref(job.id), class: "history-link" },
      el("span", { class: "history-name" }, jobTitle(job)),
      job.kind === "video" ? el("span", { class: "badge badge-video" }, "video") : null,
      el("span", { class: `badge badge-${job.status}` }, job.status),
      el("time", { datetime: job.created_at, title: new Date(job.created_at).toLocaleString() }, since(job.created_at)),
    ),
  );
}

function refreshHistorySoon() {
  clearTimeout(historyState.timer);
  historyState.timer = setTimeout(() => loadHistory(false), 400);
}

function routedJobId() {
  const match = location.hash.match(/^#\/jobs\/([^/?#]+)$/);
  if (match) return decodeURIComponent(match[1]);
  return new URLSearchParams(location.search).get("job");
}

function markCurrent() {
  const current = routedJobId();
  for (const li of document.querySelectorAll("#history-list li, #job-list > li")) {
    const isCurrent = li.dataset.jobId === current;
    li.classList.toggle("current", isCurrent);
    const link = $("a", li);
    if (link && li.parentElement.id === "history-list") {
      if (isCurrent) link.setAttribute("aria-current", "page");
      else link.removeAttribute("aria-current");
    }
  }
}

async function openRoutedJob() {
  const id = routedJobId();
  markCurrent();
  if (!id) return;
  let card = cards.get(id);
  if (card && card.status === "missing") {
    closeCard(card); // try again: the key may have been missing, or the job made since
    card = null;
  }
  if (!card) {
    card = createCard(`Job ${id.slice(0, 8)}`);
    card.id = id;
    card.li.dataset.jobId = id;
    cards.set(id, card);
    setStatus(card, "loading");
    try {
      const job = await getJob(id);
      card.title.textContent = jobTitle(job);
      follow(card, job);
    } catch (err) {
      askForKeyIf(err);
      setStatus(card, "missing");
      showError(card, `This job cannot be shown: ${err.message}`);
    }
  }
  markCurrent();
  card.li.scrollIntoView({ block: "start" });
  card.title.focus({ preventScroll: true });
}

// ---------- start ----------

setUpDropping();
setUpKeyForm();
$("#clear-jobs").addEventListener("click", () => {
  for (const card of [...allCards]) closeCard(card);
  uploadQueue.length = 0;
});
$("#history-refresh").addEventListener("click", () => loadHistory(false));
document.addEventListener("roadsigns:need-key", (event) => askForKeyIf(event.detail)); // from review.js
$("#history-more").addEventListener("click", () => loadHistory(true));
window.addEventListener("hashchange", openRoutedJob);
document.addEventListener("visibilitychange", () => {
  if (!document.hidden) loadHistory(false);
});
loadHistory(false);
openRoutedJob();
