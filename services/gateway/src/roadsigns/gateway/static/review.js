// The review queue (#/reviews): one queued sign at a time, the photo with its box, the proposed
// class and text, and one key per decision: A accept, C correct, N not a sign, M missed sign
// here (drag a box on the photo), S skip, Esc cancel. Talks to the gateway through api.js;
// every value from the API reaches the DOM through textContent or attributes, never HTML.

import { ApiError, listClasses, listReviews, postReview, viewFeedback } from "./api.js";

const $ = (selector) => document.querySelector(selector);
const PAGE = 50;
const REASON_TEXT = {
  low_confidence: "low confidence",
  reading_disagrees: "the reading disagrees with the class",
  open_set: "not one of the 43 classes",
};

const state = {
  items: [], // the page of the queue being worked through
  skipped: new Set(), // ids skipped in this visit
  current: null,
  mode: null, // null, "correct", "draw" or "missed"
  drawn: null, // [x1, y1, x2, y2] in the photo's pixels
  classes: [],
  busy: false,
};

const reviewing = () => location.hash === "#/reviews";
const percent = (x) => `${Math.round(x * 100)}%`;
const classOption = (c) => `${c.id} · ${c.name}`;

const { status, message, fail } = viewFeedback("#review-status", "#review-message");

function place(node, [x1, y1, x2, y2], width, height) {
  Object.assign(node.style, {
    left: `${(100 * x1) / width}%`,
    top: `${(100 * y1) / height}%`,
    width: `${(100 * (x2 - x1)) / width}%`,
    height: `${(100 * (y2 - y1)) / height}%`,
  });
}

// ---------- the queue ----------

async function loadClasses() {
  if (state.classes.length) return;
  state.classes = await listClasses();
  const list = $("#review-classes");
  const options = state.classes.map((c) => Object.assign(document.createElement("option"), { value: classOption(c) }));
  list.replaceChildren(...options);
}

async function load() {
  message("");
  status("Loading…");
  try {
    await loadClasses();
    const page = await listReviews(PAGE, 0);
    state.items = page.items.filter((item) => !state.skipped.has(item.id));
    const skipped = state.skipped.size ? ` (${state.skipped.size} skipped)` : "";
    status(
      page.total
        ? `${page.total} sign${page.total === 1 ? "" : "s"} to review${skipped}`
        : "Nothing to review: every queued sign has a decision.",
    );
  } catch (err) {
    state.items = [];
    status("The queue cannot be shown.");
    fail(err);
  }
  show(state.items[0] || null);
}

function show(item) {
  state.current = item;
  setMode(null);
  $("#review-item").hidden = !item;
  if (!item) return;
  const photo = $("#review-photo");
  const width = item.image_width || photo.naturalWidth || 1;
  const height = item.image_height || photo.naturalHeight || 1;
  photo.width = width;
  photo.height = height;
  photo.src = item.image_url;
  photo.alt = `The photo of job ${item.job_id.slice(0, 8)}, the sign to review boxed`;
  place($("#review-proposed"), item.bbox, width, height);
  const crop = $("#review-crop");
  crop.hidden = !item.crop_url;
  if (item.crop_url) crop.src = item.crop_url;
  $("#review-caption").textContent = `Job ${item.job_id.slice(0, 8)}, sign ${item.sign_index + 1}`;
  $("#review-class-name").textContent =
    item.class_id === null ? `${item.class_name} (none of the 43)` : `${item.class_id} · ${item.class_name}`;
  $("#review-text-read").textContent = item.text ? `“${item.text}”` : "none read";
  $("#review-confidence").textContent = percent(item.confidence);
  $("#review-reasons").textContent = item.reasons.map((r) => REASON_TEXT[r] || r).join("; ");
  $("#review-item").dataset.itemId = item.id;
  $("#review-accept").focus({ preventScroll: true });
}

function next() {
  state.items.shift();
  if (state.items.length) show(state.items[0]);
  else load();
}

async function decide(decision) {
  const item = state.current;
  if (!item || state.busy) return;
  state.busy = true;
  message("");
  try {
    await postReview(item.id, decision);
    if (decision.decision === "missed") {
      status(`Missed sign recorded on job ${item.job_id.slice(0, 8)}; now decide on the boxed sign.`);
      setMode(null);
    } else {
      next();
    }
  } catch (err) {
    if (err instanceof ApiError && (err.status === 404 || err.status === 409)) next(); // gone, or decided elsewhere
    fail(err);
  } finally {
    state.busy = false;
  }
}

// ---------- correct / missed: the form, and drawing a box ----------

function setMode(mode) {
  state.mode = mode;
  const form = $("#review-form");
  const drawing = mode === "draw";
  $("#review-frame").classList.toggle("drawing", drawing);
  if (mode !== "missed" && mode !== "draw") {
    state.drawn = null;
    $("#review-drawn").hidden = true;
  }
  form.hidden = mode !== "correct" && mode !== "missed";
  if (drawing) status("Drag a box around the sign the detector missed (Esc cancels).");
  if (form.hidden) {
    if (form.contains(document.activeElement)) $("#review-accept").focus({ preventScroll: true });
    return;
  }
  const item = state.current;
  $("#review-form-title").textContent = mode === "correct" ? "Correct the boxed sign" : "The sign you boxed";
  const known = item && item.class_id !== null ? state.classes.find((c) => c.id === item.class_id) : null;
  $("#review-class").value = mode === "correct" && item ? (known ? classOption(known) : item.class_name) : "";
  $("#review-text").value = mode === "correct" && item ? item.text : "";
  $("#review-class").focus();
}

/** The class field as the API takes it: "14 · stop" or a known name → class_id, else a free class_name. */
function classField() {
  const value = $("#review-class").value.trim();
  const picked = value.match(/^(\d+) · /);
  if (picked) return { class_id: Number(picked[1]) };
  const known = state.classes.find((c) => c.name.toLowerCase() === value.toLowerCase() || String(c.id) === value);
  if (known) return { class_id: known.id };
  return value ? { class_name: value } : {};
}

function submitForm(event) {
  event.preventDefault();
  const text = $("#review-text").value.trim();
  if (state.mode === "correct") {
    decide({ decision: "correct", ...classField(), text });
  } else if (state.mode === "missed" && state.drawn) {
    const cls = classField();
    if (!Object.keys(cls).length) {
      message("Name the sign's class first.");
      return;
    }
    decide({ decision: "missed", bbox: state.drawn, ...cls, text });
  }
}

function photoPoint(event) {
  const photo = $("#review-photo");
  const rect = photo.getBoundingClientRect();
  const sx = (state.current.image_width || photo.naturalWidth) / rect.width;
  const sy = (state.current.image_height || photo.naturalHeight) / rect.height;
  const x = Math.min(Math.max(0, event.clientX - rect.left), rect.width) * sx;
  const y = Math.min(Math.max(0, event.clientY - rect.top), rect.height) * sy;
  return [Math.round(x), Math.round(y)];
}

function setUpDrawing() {
  const frame = $("#review-frame");
  let start = null;
  frame.addEventListener("pointerdown", (event) => {
    if (state.mode !== "draw") return;
    event.preventDefault();
    frame.setPointerCapture(event.pointerId);
    start = photoPoint(event);
  });
  frame.addEventListener("pointermove", (event) => {
    if (state.mode !== "draw" || !start) return;
    const [x, y] = photoPoint(event);
    state.drawn = [Math.min(start[0], x), Math.min(start[1], y), Math.max(start[0], x), Math.max(start[1], y)];
    const drawn = $("#review-drawn");
    drawn.hidden = false;
    place(drawn, state.drawn, state.current.image_width, state.current.image_height);
  });
  frame.addEventListener("pointerup", () => {
    if (state.mode !== "draw" || !start) return;
    start = null;
    const box = state.drawn;
    if (box && box[2] - box[0] >= 4 && box[3] - box[1] >= 4) setMode("missed");
    else status("That box is too small: drag from one corner of the sign to the other.");
  });
}

// ---------- keys and routing ----------

function onKey(event) {
  if (!reviewing() || !state.current || event.ctrlKey || event.metaKey || event.altKey) return;
  if (event.key === "Escape") {
    setMode(null);
    return;
  }
  if (event.target.closest && event.target.closest("input, textarea, select")) return;
  const action = {
    a: () => decide({ decision: "accept" }),
    c: () => setMode("correct"),
    n: () => decide({ decision: "not_a_sign" }),
    m: () => setMode("draw"),
    s: () => {
      state.skipped.add(state.current.id);
      next();
    },
  }[event.key.toLowerCase()];
  if (action && !state.mode) {
    event.preventDefault();
    action();
  }
}

function route() {
  const on = reviewing();
  $("#review").hidden = !on;
  if (on) {
    load();
    $("#review").scrollIntoView({ block: "start" });
  }
}

$("#review-accept").addEventListener("click", () => decide({ decision: "accept" }));
$("#review-correct").addEventListener("click", () => setMode("correct"));
$("#review-not-sign").addEventListener("click", () => decide({ decision: "not_a_sign" }));
$("#review-missed").addEventListener("click", () => setMode("draw"));
$("#review-skip").addEventListener("click", () => {
  state.skipped.add(state.current.id);
  next();
});
$("#review-cancel").addEventListener("click", () => setMode(null));
$("#review-form").addEventListener("submit", submitForm);
$("#key-form").addEventListener("submit", () => setTimeout(route, 0)); // app.js has set the key by then
document.addEventListener("keydown", onKey);
window.addEventListener("hashchange", route);
setUpDrawing();
route();
