// The alerts board: the list (GET /alerts) with its filters, the detail panel
// with the history (GET /alerts/{id}), the actions the role may take, and the
// live refresh of a row when the stream announces a change.

import { byId, el, formatTime, severityBadge, showProblem, timeEl } from "./dom.js";

const PAGE = 200;
const ACT = "alerts:act";
const COMMENT = "alerts:comment";
// History actions that make an alert newly worth attention.
const RAISING = new Set(["opened", "reopened", "escalated"]);

const ACTIONS = {
  acknowledge: { path: (id) => `alerts/${id}/acknowledge`, body: (f) => ({ note: f.note.value.trim() || null }) },
  assign: {
    path: (id) => `alerts/${id}/assign`,
    body: (f) => ({ assignee: f.assignee.value.trim() || null, note: null }),
  },
  resolve: { path: (id) => `alerts/${id}/resolve`, body: (f) => ({ note: f.note.value.trim() || null }) },
  comment: { path: (id) => `alerts/${id}/comments`, body: (f) => ({ text: f.text.value }) },
};

function readFilters(form) {
  const data = new FormData(form);
  return {
    state: data.getAll("state"),
    severity: data.getAll("severity"),
    site: String(data.get("site") ?? "").trim(),
  };
}

export function createAlertsBoard({ api, me, onCritical }) {
  const permissions = new Set(me.permissions);
  const form = byId("alert-filters");
  const body = byId("alerts-body");
  const caption = byId("alerts-count");
  const listError = byId("alerts-error");
  const panel = byId("alert-detail");
  const detailError = byId("detail-error");
  const rows = new Map(); // alert_id -> AlertPublic, the ones matching the filters
  const refreshing = new Map(); // alert_id -> "again" when an event came during a fetch
  let filters = readFilters(form);
  let selected = null; // the alert (with history) in the detail panel
  let truncated = false;
  // Removed at sign-out, so a second sign-in does not double every handler.
  const listening = new AbortController();
  const on = { signal: listening.signal };

  function matches(alert) {
    if (filters.state.length && !filters.state.includes(alert.state)) return false;
    if (filters.severity.length && !filters.severity.includes(alert.severity)) return false;
    return !filters.site || alert.site === filters.site;
  }

  function query() {
    // Nothing ticked is "any": the API's own default would be live alerts only.
    const state = filters.state.length ? filters.state : ["open", "acknowledged", "resolved"];
    return { state, severity: filters.severity, site: filters.site || null, limit: PAGE };
  }

  async function load() {
    filters = readFilters(form);
    try {
      const page = await api.get("alerts", query());
      rows.clear();
      for (const alert of page.items) rows.set(alert.alert_id, alert);
      truncated = page.items.length >= PAGE;
      showProblem(listError, null);
    } catch (error) {
      showProblem(listError, error);
    }
    render();
  }

  function render() {
    const sorted = [...rows.values()].sort(
      (a, b) => Date.parse(b.started_at) - Date.parse(a.started_at) || b.alert_id - a.alert_id,
    );
    body.replaceChildren(...sorted.map(row));
    const shown = `${sorted.length} alert${sorted.length === 1 ? "" : "s"}`;
    caption.textContent = truncated ? `${shown} (the newest ${PAGE}; narrow the filters)` : shown;
    const sites = new Set([...rows.values()].map((a) => a.site).filter(Boolean));
    byId("known-sites").replaceChildren(...[...sites].sort().map((s) => el("option", { value: s })));
  }

  function row(alert) {
    const open = () => select(alert.alert_id);
    return el(
      "tr",
      {
        dataset: { alertId: alert.alert_id, severity: alert.severity, state: alert.state },
        class: selected && selected.alert_id === alert.alert_id ? "selected" : null,
      },
      el("td", {}, severityBadge(alert.severity)),
      el("td", {}, el("button", { type: "button", class: "link", onclick: open }, alert.title)),
      el("td", {}, alert.device_id ?? "—"),
      el("td", {}, alert.site ?? "—"),
      el("td", { class: `state state-${alert.state}` }, alert.state),
      el("td", {}, timeEl(alert.started_at)),
      el("td", {}, alert.assignee ?? "—"),
    );
  }

  async function select(alertId) {
    showProblem(detailError, null);
    try {
      showDetail(await api.get(`alerts/${alertId}`));
    } catch (error) {
      panel.hidden = false;
      showProblem(detailError, error);
    }
  }

  function showDetail(alert) {
    selected = alert;
    panel.hidden = false;
    panel.dataset.alertId = alert.alert_id;
    byId("detail-title").replaceChildren(severityBadge(alert.severity), " ", alert.title);
    const field = (name, value) => [el("dt", {}, name), el("dd", {}, value ?? "—")];
    const who = (by, at) => (by ? `${by}, ${formatTime(at)}` : null);
    byId("detail-fields").replaceChildren(
      ...field("State", el("span", { class: `state state-${alert.state}`, id: "detail-state" }, alert.state)),
      ...field("Rule", alert.rule),
      ...field("Device", alert.device_id),
      ...field("Site", alert.site),
      ...(alert.channel === null ? [] : field("Channel", String(alert.channel))),
      ...field("Started", timeEl(alert.started_at)),
      ...field("Last seen", timeEl(alert.last_seen_at)),
      ...(alert.cleared_at ? field("Condition cleared", timeEl(alert.cleared_at)) : []),
      ...field("Occurrences", String(alert.occurrences)),
      ...field("Acknowledged", who(alert.acknowledged_by, alert.acknowledged_at)),
      ...field("Assignee", alert.assignee),
      ...field("Resolved", who(alert.resolved_by, alert.resolved_at)),
      ...(Object.keys(alert.detail ?? {}).length
        ? field("Detail", el("pre", {}, JSON.stringify(alert.detail, null, 2)))
        : []),
    );
    const live = alert.state !== "resolved";
    const may = permissions.has(ACT);
    byId("act-acknowledge").hidden = !(may && alert.state === "open");
    byId("act-assign").hidden = !(may && live);
    byId("act-resolve").hidden = !(may && live);
    byId("act-comment").hidden = !permissions.has(COMMENT);
    const assignee = byId("act-assign").elements.assignee;
    if (document.activeElement !== assignee) assignee.value = alert.assignee ?? me.user;
    byId("detail-history").replaceChildren(...(alert.history ?? []).map(historyItem));
    for (const tr of body.children) {
      tr.classList.toggle("selected", Number(tr.dataset.alertId) === alert.alert_id);
    }
  }

  function historyItem(entry) {
    const change = entry.from_state && entry.from_state !== entry.to_state
      ? ` ${entry.from_state} → ${entry.to_state}` : "";
    return el(
      "li",
      { dataset: { action: entry.action } },
      timeEl(entry.at),
      " ",
      el("strong", {}, entry.action),
      ` by ${entry.actor}${change} (${entry.severity})`,
      entry.note ? el("q", {}, entry.note) : null,
    );
  }

  async function act(event) {
    event.preventDefault();
    const actionForm = event.target;
    const action = ACTIONS[actionForm.dataset.action];
    if (!selected || !action) return;
    const button = actionForm.querySelector("button");
    button.disabled = true;
    try {
      const alert = await api.post(action.path(selected.alert_id), action.body(actionForm.elements));
      actionForm.reset();
      upsert(alert);
      showDetail(alert);
      showProblem(detailError, null);
    } catch (error) {
      showProblem(detailError, error);
    } finally {
      button.disabled = false;
    }
  }

  function upsert(alert) {
    if (matches(alert)) rows.set(alert.alert_id, alert);
    else rows.delete(alert.alert_id);
    render();
  }

  // A stream event: re-read that alert (the event carries only its summary).
  async function onStreamEvent(event) {
    if (event.event !== "alert") return;
    let change;
    try {
      change = JSON.parse(event.data);
    } catch {
      return; // not ours to interpret
    }
    if (RAISING.has(change.action) && change.severity === "critical") onCritical(change);
    await refresh(change.alert_id);
  }

  async function refresh(alertId) {
    if (refreshing.has(alertId)) {
      refreshing.set(alertId, "again");
      return;
    }
    refreshing.set(alertId, "once");
    try {
      do {
        refreshing.set(alertId, "once");
        try {
          const alert = await api.get(`alerts/${alertId}`);
          upsert(alert);
          if (selected && selected.alert_id === alertId) showDetail(alert);
        } catch (error) {
          showProblem(listError, error);
        }
      } while (refreshing.get(alertId) === "again");
    } finally {
      refreshing.delete(alertId);
    }
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    load();
  }, on);
  form.addEventListener("change", (event) => {
    if (event.target.type === "checkbox") load();
  }, on);
  for (const actionForm of byId("detail-actions").querySelectorAll("form")) {
    actionForm.addEventListener("submit", act, on);
  }
  byId("detail-close").addEventListener("click", () => {
    selected = null;
    panel.hidden = true;
    render();
  }, on);

  function stop() {
    listening.abort();
    rows.clear();
    selected = null;
    panel.hidden = true;
    body.replaceChildren();
    showProblem(listError, null);
  }

  return { load, onStreamEvent, select, stop };
}
