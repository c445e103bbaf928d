// The console's entry point: sign-in with an API token, the two pages, the
// live stream and its toasts. The token lives in sessionStorage only (this
// tab, gone when it closes) and is sent as a bearer header on every call.

import { createAlertsBoard } from "./alerts.js";
import { Api } from "./api.js";
import { createDevicesPage } from "./devices.js";
import { byId, el, severityBadge, showProblem } from "./dom.js";
import { createMapPage } from "./map.js";
import { openStream } from "./stream.js";

const TOKEN_KEY = "lumeau.console.token";
const MAX_TOASTS = 5;
const VIEWS = { alerts: "alerts:read", map: "assets:read", devices: "devices:read" };
const LIVE_TEXT = {
  connecting: "connecting…",
  live: "live",
  waiting: "offline",
  stopped: "live updates off",
};

let session = null; // {me, alerts, map, devices, stream} while signed in

const api = new Api({
  token: () => sessionStorage.getItem(TOKEN_KEY) ?? "",
  onUnauthorized: (error) => signOut(error),
});

function showView(name) {
  for (const view of Object.keys(VIEWS)) {
    byId(`view-${view}`).hidden = view !== name;
    const tab = byId(`tab-${view}`);
    if (view === name) tab.setAttribute("aria-current", "page");
    else tab.removeAttribute("aria-current");
  }
  if (name === "devices" && session) session.devices.load();
  if (name === "map" && session) session.map.show();
}

function allowed(me, view) {
  const needs = view === "map" ? [VIEWS.map, "alerts:read"] : [VIEWS[view]];
  return needs.every((permission) => me.permissions.includes(permission));
}

function route() {
  if (!session) return;
  const views = Object.keys(VIEWS).filter((v) => allowed(session.me, v));
  const wanted = location.hash.slice(1);
  showView(views.includes(wanted) ? wanted : views[0]);
}

function setLive(state, detail) {
  const live = byId("live");
  live.dataset.state = state;
  live.textContent = detail ? `${LIVE_TEXT[state]}: ${detail}` : LIVE_TEXT[state];
}

function openAlert(alertId) {
  location.hash = "#alerts";
  session?.alerts.select(alertId);
}

function toast(change) {
  const box = byId("toasts");
  const where = [change.device_id, change.site].filter(Boolean).join(", ");
  const verb = change.action === "opened" ? "New" : change.action === "reopened" ? "Reopened" : "Escalated";
  const item = el(
    "div",
    { class: "toast", dataset: { alertId: change.alert_id } },
    severityBadge(change.severity),
    el("p", {}, `${verb} critical alert: ${change.rule}${where ? ` (${where})` : ""}`),
    el("div", { class: "toast-actions" },
      el("button", {
        type: "button",
        onclick: () => {
          item.remove();
          openAlert(change.alert_id);
        },
      }, "Open"),
      el("button", { type: "button", class: "quiet", onclick: () => item.remove() }, "Dismiss")),
  );
  box.prepend(item);
  while (box.children.length > MAX_TOASTS) box.lastElementChild.remove();
}

function start(me) {
  const can = (permission) => me.permissions.includes(permission);
  const alerts = createAlertsBoard({ api, me, onCritical: toast });
  const devices = createDevicesPage({ api });
  // The map reads alerts too (its markers), so it needs both permissions.
  const map = can("alerts:read") ? createMapPage({ api, me, onOpenAlert: openAlert }) : null;
  session = { me, alerts, map, devices, stream: null };
  byId("view-signin").hidden = true;
  byId("who").textContent = `${me.user} · ${me.role}`;
  byId("session").hidden = false;
  byId("tabs").hidden = false;
  for (const view of Object.keys(VIEWS)) byId(`tab-${view}`).hidden = !allowed(me, view);
  route();
  if (can("alerts:read")) alerts.load();
  if (can("stream:read") && can("alerts:read")) {
    session.stream = openStream({
      api,
      // One stream for the whole page: the board and the map both follow it.
      onEvent: (event) => {
        alerts.onStreamEvent(event);
        map?.onStreamEvent(event);
      },
      onStatus: setLive,
      // A fresh connection (no Last-Event-ID) may have missed changes: re-read the list.
      onOpen: (resumed) => {
        if (resumed) return;
        alerts.load();
        map?.reloadAlerts();
      },
    });
  } else {
    setLive("stopped", "");
  }
}

function signOut(problem) {
  sessionStorage.removeItem(TOKEN_KEY);
  if (session) {
    session.stream?.stop();
    session.alerts.stop();
    session.devices.stop();
    session.map?.stop();
    session = null;
  }
  for (const view of Object.keys(VIEWS)) byId(`view-${view}`).hidden = true;
  byId("session").hidden = true;
  byId("tabs").hidden = true;
  byId("toasts").replaceChildren();
  byId("view-signin").hidden = false;
  showProblem(byId("signin-error"), problem ?? null);
  byId("token").focus();
}

async function signIn(token) {
  sessionStorage.setItem(TOKEN_KEY, token);
  try {
    const me = await api.get("me");
    showProblem(byId("signin-error"), null);
    start(me);
  } catch (error) {
    // A 401 has already signed out with the API's detail; anything else too.
    if (error.status !== 401) signOut(error);
  }
}

byId("signin-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const input = byId("token");
  const token = input.value.trim();
  input.value = "";
  if (token) signIn(token);
});
byId("sign-out").addEventListener("click", () => signOut(null));
window.addEventListener("hashchange", route);

const saved = sessionStorage.getItem(TOKEN_KEY);
if (saved) signIn(saved);
else byId("token").focus();
