// The map page: the town from the asset register (GET /assets) drawn as
// inline SVG in a local equirectangular projection, with every cabinet and
// sensor that has a live alert (GET /alerts, open and acknowledged) marked in
// the alert's severity: a colour, a ring and a word. Stream events re-read
// the alert they announce, so the map re-colours without a reload.

import { byId, el, SEVERITY_MARK, severityBadge, showProblem, timeEl } from "./dom.js";

const SVG = "http://www.w3.org/2000/svg";
const WIDTH = 1000;
const MAX_HEIGHT = 700;
const PAD = 48; // room for the alert labels at the edges
const ASSET_PAGE = 5000;
const ALERT_PAGE = 1000;
const MAX_ALERT_PAGES = 10;
// Circuits have no geometry of their own: not asked for.
const DRAWN_KINDS = ["site", "pipe", "node", "luminaire", "cabinet", "sensor"];
const LIVE_STATES = ["open", "acknowledged"];
const RANK = { critical: 3, warning: 2, info: 1 };
// The kinds an operator can click: the ones with a device behind them.
const DEVICE_KINDS = new Set(["cabinet", "sensor"]);

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value !== null && value !== undefined) node.setAttribute(name, String(value));
  }
  if (text !== undefined) node.textContent = text;
  return node;
}

// Every [lon, lat] of a GeoJSON geometry, whatever its type.
export function positions(geometry) {
  if (!geometry) return [];
  const flat = [];
  const walk = (value) => {
    if (typeof value[0] === "number") flat.push(value);
    else for (const inner of value) walk(inner);
  };
  if (geometry.type === "GeometryCollection") {
    for (const part of geometry.geometries ?? []) flat.push(...positions(part));
  } else if (Array.isArray(geometry.coordinates) && geometry.coordinates.length) {
    walk(geometry.coordinates);
  }
  return flat;
}

// A local equirectangular projection fitted to the features' bounding box:
// x = lon·cos(lat0), y = lat, scaled into a WIDTH-wide drawing (north up).
// A town spans a few kilometres, where this is within a fraction of a
// percent of a conformal projection; no box across the antimeridian (the
// API refuses those too).
export function fitProjection(features) {
  let minLon = Infinity;
  let maxLon = -Infinity;
  let minLat = Infinity;
  let maxLat = -Infinity;
  for (const feature of features) {
    for (const [lon, lat] of positions(feature.geometry)) {
      minLon = Math.min(minLon, lon);
      maxLon = Math.max(maxLon, lon);
      minLat = Math.min(minLat, lat);
      maxLat = Math.max(maxLat, lat);
    }
  }
  if (minLon > maxLon) return null; // nothing with a position
  const k = Math.cos((((minLat + maxLat) / 2) * Math.PI) / 180);
  // A single point (or a straight east-west or north-south line) still gets a scale.
  const spanX = Math.max((maxLon - minLon) * k, 1e-4);
  const spanY = Math.max(maxLat - minLat, 1e-4);
  const scale = Math.min((WIDTH - 2 * PAD) / spanX, (MAX_HEIGHT - 2 * PAD) / spanY);
  const height = Math.round(spanY * scale + 2 * PAD);
  const left = (WIDTH - (maxLon - minLon) * k * scale) / 2;
  const top = (height - (maxLat - minLat) * scale) / 2;
  return {
    width: WIDTH,
    height,
    x: (lon) => left + (lon - minLon) * k * scale,
    y: (lat) => top + (maxLat - lat) * scale,
  };
}

// The alert that decides a device's mark: the most severe, then open before
// acknowledged, then the newest.
export function worstAlert(alerts) {
  let worst = null;
  for (const alert of alerts) {
    if (!worst) {
      worst = alert;
      continue;
    }
    const bySeverity = (RANK[alert.severity] ?? 0) - (RANK[worst.severity] ?? 0);
    const byState = (alert.state === "open") - (worst.state === "open");
    const byTime = Date.parse(alert.started_at) - Date.parse(worst.started_at);
    if (bySeverity > 0 || (bySeverity === 0 && (byState > 0 || (byState === 0 && byTime > 0)))) {
      worst = alert;
    }
  }
  return worst;
}

// "cabinet cab-01 (cab-0001): critical alert": what a screen reader (and a test) hears.
export function markerName(kind, assetId, deviceId, alerts) {
  const who = `${kind} ${assetId}${deviceId ? ` (${deviceId})` : ""}`;
  if (!deviceId) return `${who}: no device`;
  const worst = worstAlert(alerts);
  if (!worst) return `${who}: no live alert`;
  const more = alerts.length > 1 ? ` and ${alerts.length - 1} more` : "";
  const acknowledged = alerts.every((a) => a.state === "acknowledged") ? ", acknowledged" : "";
  return `${who}: ${worst.severity} alert${acknowledged}${more}`;
}

function assetId(feature) {
  const p = feature.properties;
  return p[`${p.kind}_id`] ?? String(feature.id ?? "").split(":").slice(1).join(":");
}

function pathOf(rings, projection) {
  return rings
    .map((ring) => ring.map(([lon, lat], i) =>
      `${i ? "L" : "M"}${projection.x(lon).toFixed(1)},${projection.y(lat).toFixed(1)}`).join("") + "Z")
    .join("");
}

// Drawn stroke width of a pipe: wider mains read as mains, thin service pipes stay visible.
export function pipeWidth(diameterMm) {
  return Math.min(10, Math.max(1.5, 1 + diameterMm / 50));
}

export function createMapPage({ api, me, onOpenAlert }) {
  const canvas = byId("map-svg");
  const status = byId("map-status");
  const error = byId("map-error");
  const panel = byId("map-detail");
  const canReadDevices = me.permissions.includes("devices:read");
  const listening = new AbortController();
  const on = { signal: listening.signal };

  const markers = new Map(); // device_id -> [marker <g>] (a device is on one asset, but be safe)
  const live = new Map(); // alert_id -> AlertPublic, open or acknowledged
  const asked = new Map(); // alert_id -> number of the newest request for it
  let features = [];
  let assetsLoaded = false;
  let alertsState = "idle"; // idle, loading, loaded
  let announced = new Set(); // alert ids the stream named while the list was loading
  let opened = null; // {feature, device} shown in the panel
  let requests = 0;
  let alertsComplete = true;

  let byDevice = null; // device_id -> its live alerts, rebuilt after a change

  function alertsOf(deviceId) {
    if (!deviceId) return [];
    if (!byDevice) {
      byDevice = new Map();
      for (const alert of live.values()) {
        if (!byDevice.has(alert.device_id)) byDevice.set(alert.device_id, []);
        byDevice.get(alert.device_id).push(alert);
      }
    }
    return [...(byDevice.get(deviceId) ?? [])];
  }

  async function loadAssets() {
    const all = [];
    let offset = 0;
    for (;;) {
      const page = await api.get("assets", { kind: DRAWN_KINDS, limit: ASSET_PAGE, offset });
      all.push(...page.features);
      offset += page.features.length;
      if (page.features.length === 0 || offset >= page.total) break;
    }
    return all;
  }

  async function loadAlerts() {
    alertsState = "loading";
    announced = new Set();
    const found = new Map();
    let complete = true;
    try {
      for (let page = 0; ; page += 1) {
        if (page === MAX_ALERT_PAGES) {
          complete = false;
          break;
        }
        const answer = await api.get("alerts", {
          state: LIVE_STATES, limit: ALERT_PAGE, offset: page * ALERT_PAGE,
        });
        for (const alert of answer.items) found.set(alert.alert_id, alert);
        if (answer.items.length < ALERT_PAGE) break;
      }
    } finally {
      alertsState = "loaded";
    }
    live.clear();
    for (const [id, alert] of found) live.set(id, alert);
    byDevice = null;
    alertsComplete = complete;
    paintAll();
    describe();
    // What the stream announced during the load may be newer than the page read.
    for (const id of announced) refresh(id);
    announced = new Set();
  }

  async function load() {
    showProblem(error, null);
    status.textContent = "loading…";
    try {
      features = await loadAssets();
      assetsLoaded = true;
      draw();
      await loadAlerts();
    } catch (problem) {
      status.textContent = "";
      showProblem(error, problem);
    }
  }

  function describe() {
    const count = (kind) => features.filter((f) => f.properties.kind === kind).length;
    const onMap = new Set(markers.keys());
    const alerted = new Set([...live.values()].map((a) => a.device_id).filter((d) => onMap.has(d)));
    const elsewhere = [...live.values()].filter((a) => !onMap.has(a.device_id)).length;
    const parts = [
      `${count("cabinet")} cabinets, ${count("sensor")} sensors, ${count("pipe")} pipes`,
      `${alerted.size} device${alerted.size === 1 ? "" : "s"} with a live alert`,
    ];
    if (elsewhere) parts.push(`${elsewhere} live alert${elsewhere === 1 ? "" : "s"} not on the map (see Alerts)`);
    if (!alertsComplete) parts.push(`only the newest ${MAX_ALERT_PAGES * ALERT_PAGE} live alerts shown`);
    status.textContent = parts.join(" · ");
  }

  function draw() {
    markers.clear();
    const projection = fitProjection(features);
    const sites = features.filter((f) => f.properties.kind === "site").map((f) => f.properties.name);
    const title = svg("title", { id: "map-svg-title" },
      `Map of ${sites.length ? sites.join(", ") : "the assets"}: cabinets are squares,`
      + " leak sensors circles, pipes lines, luminaires and water nodes dots");
    canvas.replaceChildren(title);
    if (!projection) {
      canvas.setAttribute("viewBox", `0 0 ${WIDTH} 120`);
      canvas.append(svg("text", { class: "empty", x: WIDTH / 2, y: 60, "text-anchor": "middle" },
        "the asset register has nothing with a position yet"));
      return;
    }
    canvas.setAttribute("viewBox", `0 0 ${projection.width} ${projection.height}`);
    const layers = Object.fromEntries(DRAWN_KINDS.map((kind) => {
      const layer = svg("g", { class: `layer layer-${kind}` });
      canvas.append(layer);
      return [kind, layer];
    }));
    for (const feature of features) {
      const shape = drawFeature(feature, projection);
      if (shape) layers[feature.properties.kind].append(shape);
    }
  }

  function drawFeature(feature, projection) {
    const p = feature.properties;
    const geometry = feature.geometry;
    const id = assetId(feature);
    const base = { "data-kind": p.kind, "data-asset-id": id };
    if (!geometry) return null;
    if (p.kind === "site") {
      const polygons = geometry.type === "Polygon" ? [geometry.coordinates]
        : geometry.type === "MultiPolygon" ? geometry.coordinates : [];
      if (!polygons.length) return null; // a site given as a point has no outline
      return svg("path", {
        ...base, class: "site", role: "img", "aria-label": `site ${id}${p.name ? ` (${p.name})` : ""}`,
        d: polygons.map((rings) => pathOf(rings, projection)).join(""),
      });
    }
    if (p.kind === "pipe" && geometry.type === "LineString") {
      return svg("polyline", {
        ...base, class: "pipe", role: "img",
        "aria-label": `pipe ${id}: ${p.diameter_mm} mm ${p.material}`,
        "stroke-width": pipeWidth(p.diameter_mm).toFixed(1),
        points: geometry.coordinates.map(([lon, lat]) =>
          `${projection.x(lon).toFixed(1)},${projection.y(lat).toFixed(1)}`).join(" "),
      });
    }
    if (geometry.type !== "Point") return null;
    const [lon, lat] = geometry.coordinates;
    const x = projection.x(lon).toFixed(1);
    const y = projection.y(lat).toFixed(1);
    if (p.kind === "node") {
      return svg("circle", {
        ...base, class: `node node-${p.node_type}`, role: "img", cx: x, cy: y,
        r: p.node_type === "junction" ? 3 : 4.5, "aria-label": `node ${id} (${p.node_type})`,
      });
    }
    if (p.kind === "luminaire") {
      return svg("circle", {
        ...base, class: "luminaire", role: "img", cx: x, cy: y, r: 2.5,
        "aria-label": `luminaire ${id}: ${p.rated_power_w} W ${p.technology}`,
      });
    }
    if (!DEVICE_KINDS.has(p.kind)) return null;
    const marker = svg("g", {
      ...base, class: `device ${p.kind}`, transform: `translate(${x} ${y})`,
      role: "button", tabindex: 0, "data-device-id": p.device_id ?? null,
    });
    marker.append(p.kind === "cabinet"
      ? svg("rect", { class: "body", x: -7, y: -7, width: 14, height: 14 })
      : svg("circle", { class: "body", r: 8 }));
    marker.addEventListener("click", () => openPanel(feature));
    marker.addEventListener("keydown", (event) => {
      if (event.key === "Enter" || event.key === " ") {
        event.preventDefault();
        openPanel(feature);
      }
    });
    if (p.device_id) {
      if (!markers.has(p.device_id)) markers.set(p.device_id, []);
      markers.get(p.device_id).push(marker);
    }
    paint(marker);
    return marker;
  }

  // A marker's alert mark: colour class, a ring and a word (never colour alone).
  function paint(marker) {
    const kind = marker.dataset.kind;
    const deviceId = marker.dataset.deviceId ?? null;
    const alerts = alertsOf(deviceId);
    const worst = worstAlert(alerts);
    marker.setAttribute("aria-label", markerName(kind, marker.dataset.assetId, deviceId, alerts));
    for (const old of marker.querySelectorAll(".ring, .alert-label")) old.remove();
    if (!worst) {
      delete marker.dataset.severity;
      delete marker.dataset.state;
      return;
    }
    marker.dataset.severity = worst.severity;
    marker.dataset.state = alerts.some((a) => a.state === "open") ? "open" : "acknowledged";
    marker.prepend(svg("circle", { class: "ring", r: 15 }));
    const mark = SEVERITY_MARK[worst.severity] ?? "■";
    const more = alerts.length > 1 ? ` +${alerts.length - 1}` : "";
    marker.append(svg("text", { class: "alert-label", x: 19, y: 6, "aria-hidden": "true" },
      `${mark} ${worst.severity.toUpperCase()}${more}`));
  }

  function paintAll() {
    for (const list of markers.values()) for (const marker of list) paint(marker);
    if (opened) showAlertsInPanel();
  }

  function paintDevice(deviceId) {
    for (const marker of markers.get(deviceId) ?? []) paint(marker);
    if (opened && opened.feature.properties.device_id === deviceId) showAlertsInPanel();
    describe();
  }

  async function openPanel(feature) {
    const p = feature.properties;
    const id = assetId(feature);
    opened = { feature };
    for (const marker of canvas.querySelectorAll("g.device")) {
      marker.classList.toggle("selected", marker.dataset.kind === p.kind && marker.dataset.assetId === id);
    }
    panel.hidden = false;
    panel.dataset.kind = p.kind;
    panel.dataset.assetId = id;
    byId("map-detail-title").textContent = `${p.kind} ${id}${p.name ? ` · ${p.name}` : ""}`;
    const field = (name, value, attrs = {}) => [el("dt", {}, name), el("dd", attrs, value ?? "—")];
    const mounted = p.kind === "sensor" ? (p.node_id ? `node ${p.node_id}` : `pipe ${p.pipe_id}`) : null;
    byId("map-detail-fields").replaceChildren(
      ...field("Id", id),
      ...field("Device", p.device_id ?? "none yet"),
      ...field("Site", p.site_id),
      ...(mounted ? field("Mounted on", mounted) : []),
      ...field("Presence", p.device_id ? "loading…" : "—", { id: "map-detail-presence" }),
      ...field("Last seen", "—", { id: "map-detail-seen" }),
    );
    showAlertsInPanel();
    if (p.device_id && canReadDevices) await showPresence(feature);
  }

  async function showPresence(feature) {
    const deviceId = feature.properties.device_id;
    const presence = byId("map-detail-presence");
    const seen = byId("map-detail-seen");
    try {
      const device = await api.get(`devices/${encodeURIComponent(deviceId)}`);
      if (opened?.feature !== feature) return; // another marker was opened meanwhile
      presence.replaceChildren(
        el("span", { class: `presence presence-${device.presence}` }, device.presence),
        device.presence_since ? el("span", { class: "muted since" }, " since ", timeEl(device.presence_since)) : "",
      );
      // The asset upload registers its devices; ingest fills them in when they report.
      if (device.last_seen) seen.replaceChildren(timeEl(device.last_seen));
      else seen.textContent = "never heard from";
    } catch (problem) {
      if (opened?.feature !== feature) return;
      // Assets are often drawn before their device is provisioned or first heard.
      presence.textContent = problem.status === 404 ? "not in the device registry"
        : `unknown: ${problem.message}`;
    }
  }

  function showAlertsInPanel() {
    const deviceId = opened.feature.properties.device_id;
    const alerts = alertsOf(deviceId).sort((a, b) =>
      (RANK[b.severity] ?? 0) - (RANK[a.severity] ?? 0) || Date.parse(b.started_at) - Date.parse(a.started_at));
    const list = byId("map-detail-alerts");
    if (!alerts.length) {
      list.replaceChildren(el("li", { class: "muted" }, "no live alert"));
      return;
    }
    list.replaceChildren(...alerts.map((alert) => el(
      "li",
      { dataset: { alertId: alert.alert_id } },
      severityBadge(alert.severity),
      " ",
      el("a", {
        href: "#alerts",
        onclick: (event) => {
          event.preventDefault();
          onOpenAlert(alert.alert_id);
        },
      }, alert.title),
      ` (${alert.state})`,
    )));
  }

  // Re-read one alert; only the answer to the newest request for it is kept.
  async function refresh(alertId) {
    requests += 1;
    const mine = requests;
    asked.set(alertId, mine);
    let alert = null;
    try {
      alert = await api.get(`alerts/${alertId}`);
    } catch (problem) {
      if (problem.status !== 404) {
        if (asked.get(alertId) === mine) asked.delete(alertId);
        showProblem(error, problem);
        return;
      }
    }
    if (asked.get(alertId) !== mine) return; // a newer request has been or will be applied
    asked.delete(alertId);
    const before = live.get(alertId);
    if (alert && LIVE_STATES.includes(alert.state) && alert.device_id) live.set(alertId, alert);
    else live.delete(alertId);
    byDevice = null;
    if (before && before.device_id !== alert?.device_id) paintDevice(before.device_id);
    if (alert?.device_id) paintDevice(alert.device_id);
  }

  function onStreamEvent(event) {
    if (alertsState === "idle") return; // the map has not been opened: it reads everything then
    if (event.event === "replay_truncated") {
      reloadAlerts();
      return;
    }
    if (event.event !== "alert") return;
    let change;
    try {
      change = JSON.parse(event.data);
    } catch {
      return;
    }
    if (!Number.isInteger(change.alert_id)) return;
    if (alertsState === "loading") announced.add(change.alert_id);
    else refresh(change.alert_id);
  }

  // A fresh stream connection may have missed changes: read the live alerts again.
  function reloadAlerts() {
    if (alertsState !== "loaded") return;
    loadAlerts().catch((problem) => showProblem(error, problem));
  }

  function show() {
    if (!assetsLoaded) load();
  }

  byId("map-reload").addEventListener("click", load, on);
  byId("map-detail-close").addEventListener("click", () => {
    opened = null;
    panel.hidden = true;
    for (const marker of canvas.querySelectorAll("g.device.selected")) marker.classList.remove("selected");
  }, on);

  function stop() {
    listening.abort();
    markers.clear();
    live.clear();
    byDevice = null;
    features = [];
    opened = null;
    alertsState = "idle";
    assetsLoaded = false;
    panel.hidden = true;
    canvas.replaceChildren();
    status.textContent = "";
    showProblem(error, null);
  }

  return { show, onStreamEvent, reloadAlerts, stop };
}
