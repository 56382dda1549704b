// The gateway's HTTP API, as the page uses it. Every failure becomes an ApiError whose
// message is the API's own `detail` when it sent one, so the page can show it as is.
// When the gateway has ROADSIGNS_API_KEYS set, the key the person gives is kept in this
// browser's localStorage and sent as X-API-Key, never in a URL: the image and crop links in a
// job's JSON are signed and short-lived, and an <img> opens them without a key.

const KEY_STORE = "roadsigns.apiKey";

function storedKey() {
  try {
    return localStorage.getItem(KEY_STORE) || "";
  } catch {
    return ""; // storage blocked: work without a key
  }
}

let apiKey = storedKey();

export function setApiKey(key) {
  apiKey = key.trim();
  try {
    if (apiKey) localStorage.setItem(KEY_STORE, apiKey);
    else localStorage.removeItem(KEY_STORE);
  } catch {
    // storage blocked: the key lasts for this page only
  }
}

export const hasApiKey = () => Boolean(apiKey);

function headers() {
  const h = { Accept: "application/json" };
  if (apiKey) h["X-API-Key"] = apiKey;
  return h;
}

/** A random Idempotency-Key; crypto.randomUUID needs https, getRandomValues does not. */
/**
 * A view's status line and message box (CSS selectors): `status(text)`, `message(text)` (hidden
 * when empty), and `fail(err)`, which shows an error there and, for a 401 or 403, asks app.js
 * for an API key (the "roadsigns:need-key" event).
 */
export function viewFeedback(statusSelector, messageSelector) {
  const status = (text) => {
    document.querySelector(statusSelector).textContent = text;
  };
  const message = (text) => {
    const node = document.querySelector(messageSelector);
    node.textContent = text || "";
    node.hidden = !text;
  };
  const fail = (err) => {
    message(err instanceof ApiError ? err.message : String(err));
    if (err instanceof ApiError && (err.status === 401 || err.status === 403)) {
      document.dispatchEvent(new CustomEvent("roadsigns:need-key", { detail: err }));
    }
  };
  return { status, message, fail };
}

export function newIdempotencyKey() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status; // 0 when the request never got an answer
  }
}

function detailOf(status, bodyText) {
  try {
    const body = JSON.parse(bodyText);
    if (typeof body.detail === "string") return body.detail;
    if (Array.isArray(body.detail)) return body.detail.map((d) => d.msg || JSON.stringify(d)).join("; ");
  } catch {
    // not JSON: a proxy's error page, say; fall through to the status line
  }
  return `the server answered HTTP ${status}`;
}

async function getJson(url, init = {}) {
  let response;
  try {
    response = await fetch(url, { headers: headers(), cache: "no-store", ...init });
  } catch {
    throw new ApiError(0, "the server cannot be reached");
  }
  const text = await response.text();
  if (!response.ok) throw new ApiError(response.status, detailOf(response.status, text));
  return JSON.parse(text);
}

/** GET a file (the inventory's CSV) with the page's key, as a Blob to save. */
async function getBlob(url) {
  let response;
  try {
    response = await fetch(url, { headers: { ...headers(), Accept: "*/*" }, cache: "no-store" });
  } catch {
    throw new ApiError(0, "the server cannot be reached");
  }
  if (!response.ok) throw new ApiError(response.status, detailOf(response.status, await response.text()));
  return response.blob();
}

/**
 * POST /jobs with one file, a photo or a video; resolves to the new job (status queued). XHR for upload progress.
 * Retrying with the same idempotencyKey after a dropped connection cannot make a second job.
 */
export function submitPhoto(file, idempotencyKey, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "/jobs");
    for (const [name, value] of Object.entries(headers())) xhr.setRequestHeader(name, value);
    xhr.setRequestHeader("Idempotency-Key", idempotencyKey);
    xhr.upload.onprogress = (event) => {
      if (event.lengthComputable && onProgress) onProgress(event.loaded / event.total);
    };
    xhr.onload = () => {
      if (xhr.status === 202 || xhr.status === 200) {
        try {
          resolve(JSON.parse(xhr.responseText));
        } catch {
          reject(new ApiError(xhr.status, "the server's answer could not be read"));
        }
      } else {
        reject(new ApiError(xhr.status, detailOf(xhr.status, xhr.responseText)));
      }
    };
    xhr.onerror = () => reject(new ApiError(0, "the upload failed: the server cannot be reached"));
    const form = new FormData();
    form.append("file", file, file.name);
    xhr.send(form);
  });
}

export const getJob = (id) => getJson(`/jobs/${encodeURIComponent(id)}`);

export const listJobs = (limit, offset) => getJson(`/jobs?limit=${limit}&offset=${offset}`);

// The review queue (GET /reviews, POST /reviews/{id}) and the classes a reviewer picks from.
export const listReviews = (limit, offset) => getJson(`/reviews?limit=${limit}&offset=${offset}`);

export const listClasses = () => getJson("/reviews/classes");

export const postReview = (id, decision) =>
  getJson(`/reviews/${encodeURIComponent(id)}`, {
    method: "POST",
    headers: { ...headers(), "Content-Type": "application/json" },
    body: JSON.stringify(decision),
  });

// The sign inventory (GET /inventory: GeoJSON points; /inventory.csv) and the page's settings
// from the gateway (GET /page-config: the map's tile URL, if any; public, no key needed).
// `query`: the API's filters (bbox, class_id, since) as a URLSearchParams, "" for every sign.
export const getInventory = (query = "") => getJson(`/inventory${query ? `?${query}` : ""}`);

export const getInventoryCsv = (query = "") => getBlob(`/inventory.csv${query ? `?${query}` : ""}`);

export const getPageConfig = () => getJson("/page-config");
