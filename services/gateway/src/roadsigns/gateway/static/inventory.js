// The sign inventory (#/inventory): GET /inventory's points plotted on an SVG map, a table of
// the signs beside it, and the same signs as CSV. With no tile server configured the map is a
// plain plot (equirectangular, fitted to the points, with a scale bar) and asks nothing of any
// other server; with ROADSIGNS_MAP_TILE_URL set (GET /page-config) the points are drawn in Web
// Mercator over that server's 256 px tiles. Talks to the gateway through api.js; every value
// from the API reaches the DOM through textContent or attributes, never HTML.

import { getInventory, getInventoryCsv, getPageConfig, hasApiKey, viewFeedback } from "./api.js";

const $ = (selector, root = document) => root.querySelector(selector);
const SVG = "http://www.w3.org/2000/svg";
const WIDTH = 640;
const HEIGHT = 400;
const PAD = 28; // around the points, so none sits on the edge
const MIN_SPAN_M = 200; // a lone sign, or signs a few metres apart, still get a street's worth of map
const EARTH_RADIUS_M = 6371008.8; // mean radius, as roadsigns.shared.inventory
const MERCATOR_RADIUS_M = 6378137; // Web Mercator's sphere
const MAX_TILE_ZOOM = 19;
const MAX_TILES = 64;

let config = null; // GET /page-config, asked once
let loading = null;

const FILTERS = ["bbox", "class_id", "since"]; // GET /inventory's own; the view passes them on

// The view's address: #/inventory, optionally with the API's filters, e.g.
// #/inventory?bbox=11.5,48.1,11.7,48.2&class_id=2 (a street's signs, one class): a link to share.
const hashPath = () => location.hash.split("?")[0];
const hashQuery = () => location.hash.split("?")[1] || "";
const showing = () => hashPath() === "#/inventory";

/** The filters in the address that the API knows, in its own query form. */
function filters() {
  const given = new URLSearchParams(hashQuery());
  const query = new URLSearchParams();
  for (const name of FILTERS) if (given.has(name)) query.set(name, given.get(name));
  return query.toString();
}

const { status, message, fail } = viewFeedback("#inventory-status", "#inventory-message");

function svg(tag, attrs = {}, text = null) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value !== null && value !== undefined) node.setAttribute(name, String(value));
  }
  if (text !== null) node.textContent = text;
  return node;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined) continue;
    if (name === "class") node.className = value;
    else node.setAttribute(name, String(value));
  }
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

// ---------- projections: lon/lat to plane units, and metres per unit at the map's middle ----------

/** x = lon × cos(middle latitude), y = -lat, in degrees: true distances near the middle. */
function equirectangular(midLat) {
  const k = Math.cos((midLat * Math.PI) / 180);
  return {
    project: (lon, lat) => [lon * k, -lat],
    metresPerUnit: (EARTH_RADIUS_M * Math.PI) / 180,
  };
}

/** Web Mercator as XYZ tiles use it: the world is the unit square, y down from 85.05° N. */
function webMercator(midLat) {
  return {
    project: (lon, lat) => {
      const phi = (Math.max(-85.05112878, Math.min(85.05112878, lat)) * Math.PI) / 180;
      return [(lon + 180) / 360, (1 - Math.log(Math.tan(phi) + 1 / Math.cos(phi)) / Math.PI) / 2];
    },
    metresPerUnit: 2 * Math.PI * MERCATOR_RADIUS_M * Math.cos((midLat * Math.PI) / 180),
  };
}

/** Fit the projected points into the SVG: its scale (SVG px per unit) and the centre it is drawn around. */
function fit(points, projection) {
  const xs = points.map(([x]) => x);
  const ys = points.map(([, y]) => y);
  const minSpan = MIN_SPAN_M / projection.metresPerUnit;
  const spanX = Math.max(Math.max(...xs) - Math.min(...xs), minSpan);
  const spanY = Math.max(Math.max(...ys) - Math.min(...ys), minSpan);
  const scale = Math.min((WIDTH - 2 * PAD) / spanX, (HEIGHT - 2 * PAD) / spanY);
  const centre = [(Math.max(...xs) + Math.min(...xs)) / 2, (Math.max(...ys) + Math.min(...ys)) / 2];
  return {
    scale,
    centre,
    toSvg: ([x, y]) => [WIDTH / 2 + (x - centre[0]) * scale, HEIGHT / 2 + (y - centre[1]) * scale],
  };
}

// ---------- drawing ----------

function drawTiles(group, template, view) {
  // The zoom whose tiles show closest to their own 256 px at this scale.
  const zoom = Math.max(0, Math.min(MAX_TILE_ZOOM, Math.round(Math.log2(view.scale / 256))));
  const n = 2 ** zoom;
  const size = view.scale / n; // one tile, in SVG px
  const [cx, cy] = view.centre;
  const x0 = Math.max(0, Math.floor((cx - WIDTH / 2 / view.scale) * n));
  const x1 = Math.min(n - 1, Math.floor((cx + WIDTH / 2 / view.scale) * n));
  const y0 = Math.max(0, Math.floor((cy - HEIGHT / 2 / view.scale) * n));
  const y1 = Math.min(n - 1, Math.floor((cy + HEIGHT / 2 / view.scale) * n));
  if ((x1 - x0 + 1) * (y1 - y0 + 1) > MAX_TILES) return;
  for (let ty = y0; ty <= y1; ty++) {
    for (let tx = x0; tx <= x1; tx++) {
      const [x, y] = view.toSvg([tx / n, ty / n]);
      const href = template.replaceAll("{z}", zoom).replaceAll("{x}", tx).replaceAll("{y}", ty);
      group.append(
        svg("image", {
          class: "map-tile",
          href,
          x,
          y,
          width: size,
          height: size,
          preserveAspectRatio: "none",
          "data-z": zoom,
          "data-x": tx,
          "data-y": ty,
        }),
      );
    }
  }
}

/** A bar of a round length (1, 2 or 5 × 10^k m) no longer than a quarter of the map, bottom left. */
function drawScale(group, view, metresPerUnit) {
  const metresPerPx = metresPerUnit / view.scale;
  const most = (WIDTH / 4) * metresPerPx;
  const power = 10 ** Math.floor(Math.log10(most));
  const metres = [5, 2, 1].map((m) => m * power).find((m) => m <= most);
  const length = metres / metresPerPx;
  const label = metres >= 1000 ? `${metres / 1000} km` : `${Number(metres.toPrecision(3))} m`;
  const x = 12;
  const y = HEIGHT - 14;
  group.replaceChildren(
    svg("rect", { class: "map-scale-bg", x: x - 6, y: y - 22, width: length + 12, height: 30, rx: 4 }),
    svg("path", { class: "map-scale-bar", d: `M${x} ${y - 6}V${y}H${x + length}V${y - 6}` }),
    svg("text", { class: "map-scale-text", x, y: y - 9 }, label),
  );
  group.dataset.metres = metres;
  group.dataset.px = length;
}

function signLabel(p) {
  return p.text ? `${p.class_name} “${p.text}”` : p.class_name;
}

function draw(features) {
  const map = $("#inventory-map");
  const tiles = $(".map-tiles", map);
  const points = $(".map-points", map);
  const rows = $("#inventory-table tbody");
  tiles.replaceChildren();
  points.replaceChildren();
  rows.replaceChildren();
  $(".map-scale", map).replaceChildren();
  if (!features.length) return;

  const coords = features.map((f) => f.geometry.coordinates); // [lon, lat]
  const lats = coords.map(([, lat]) => lat);
  const midLat = (Math.max(...lats) + Math.min(...lats)) / 2;
  const template = config && config.map_tile_url;
  const projection = template ? webMercator(midLat) : equirectangular(midLat);
  const projected = coords.map(([lon, lat]) => projection.project(lon, lat));
  const view = fit(projected, projection);
  map.dataset.projection = template ? "web-mercator" : "equirectangular";
  if (template) drawTiles(tiles, template, view);
  drawScale($(".map-scale", map), view, projection.metresPerUnit);

  features.forEach((feature, i) => {
    const p = feature.properties;
    const [lon, lat] = coords[i];
    const [x, y] = view.toSvg(projected[i]);
    const seen = `${p.sightings} sighting${p.sightings === 1 ? "" : "s"}`;
    const point = svg("circle", {
      class: "map-point",
      cx: x,
      cy: y,
      r: 7,
      tabindex: 0,
      "data-index": i,
      "data-lon": lon,
      "data-lat": lat,
      "data-class-id": p.class_id,
      "aria-label": `Sign ${i + 1}: ${signLabel(p)}, ${seen}`,
    });
    point.append(svg("title", {}, `${i + 1}. ${signLabel(p)} (${seen})`));
    points.append(point);
    rows.append(
      el(
        "tr",
        { "data-index": i, "data-class-id": p.class_id, tabindex: 0 },
        el("td", {}, String(i + 1)),
        el("td", { class: "inv-class" }, p.class_name),
        el("td", { class: "inv-text" }, p.text || "—"),
        el("td", { class: "inv-sightings" }, String(p.sightings)),
        el("td", {}, el("time", { datetime: p.last_seen }, new Date(p.last_seen).toLocaleString())),
        el("td", { class: "inv-where" }, `${lat.toFixed(5)}, ${lon.toFixed(5)}`),
      ),
    );
  });
  // Hovering or focusing a point lights up its row, and the other way round.
  const section = $("#inventory");
  for (const node of section.querySelectorAll(".map-point, #inventory-table tbody tr")) {
    const set = (on) => {
      for (const other of section.querySelectorAll(`[data-index="${node.dataset.index}"]`)) {
        other.classList.toggle("hl", on);
      }
    };
    node.addEventListener("mouseenter", () => set(true));
    node.addEventListener("mouseleave", () => set(false));
    node.addEventListener("focusin", () => set(true));
    node.addEventListener("focusout", () => set(false));
  }
}

// ---------- loading ----------

async function load() {
  message("");
  status("Loading…");
  try {
    if (!config) config = await getPageConfig();
    const query = filters();
    $("#inventory-csv").href = `/inventory.csv${query ? `?${query}` : ""}`;
    const collection = await getInventory(query);
    const features = collection.features || [];
    draw(features);
    $("#inventory-body").hidden = !features.length;
    const attribution = config.map_tile_url ? config.map_tile_attribution || "" : "";
    $("#inventory-caption").textContent =
      `${features.length} sign${features.length === 1 ? "" : "s"}; sightings of one class and text a few metres ` +
      `apart are one sign.${attribution ? ` Map: ${attribution}` : ""}`;
    status(
      features.length
        ? `${features.length} located sign${features.length === 1 ? "" : "s"}`
        : "No located signs yet: the signs of photos with GPS in their EXIF are listed here.",
    );
  } catch (err) {
    status("The inventory could not be loaded.");
    fail(err);
  }
}

/** The CSV link works as a plain link; with an API key the file is fetched with it and saved from a blob. */
async function downloadCsv(event) {
  if (!hasApiKey()) return;
  event.preventDefault();
  try {
    const url = URL.createObjectURL(await getInventoryCsv(filters()));
    const link = el("a", { href: url, download: "inventory.csv", hidden: "" });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  } catch (err) {
    fail(err);
  }
}

function route() {
  const on = showing();
  $("#inventory").hidden = !on;
  if (on) {
    loading = loading || load().finally(() => (loading = null));
    $("#inventory").scrollIntoView({ block: "start" });
  }
}

$("#inventory-refresh").addEventListener("click", () => {
  if (!loading) loading = load().finally(() => (loading = null));
});
$("#inventory-csv").addEventListener("click", downloadCsv);
$("#key-form").addEventListener("submit", () => setTimeout(route, 0)); // app.js has set the key by then
window.addEventListener("hashchange", route);
route();
