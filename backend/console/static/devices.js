// The devices page: the registry with presence (GET /devices) and, for the
// selected device, one metric over a recent window (GET /devices/{id}/telemetry).

import { describeChart, drawChart } from "./chart.js";
import { byId, el, showProblem, timeEl } from "./dom.js";

const PAGE = 500;
const DEFAULT_METRIC = { cabinet: "power_w", leak_sensor: "noise_rms_db", gateway: "power_w" };
const PRESENCE_MARK = { online: "●", offline: "○", unknown: "?" };

export function createDevicesPage({ api }) {
  const body = byId("devices-body");
  const count = byId("devices-count");
  const listError = byId("devices-error");
  const panel = byId("telemetry");
  const form = byId("telemetry-form");
  const chart = byId("telemetry-chart");
  const chartError = byId("telemetry-error");
  const listening = new AbortController();
  const on = { signal: listening.signal };
  let selected = null;

  async function load() {
    try {
      const page = await api.get("devices", { limit: PAGE });
      body.replaceChildren(...page.items.map(row));
      const more = page.total > page.items.length ? ` (first ${page.items.length} shown)` : "";
      count.textContent = `${page.total} device${page.total === 1 ? "" : "s"}${more}`;
      showProblem(listError, null);
    } catch (error) {
      showProblem(listError, error);
    }
  }

  function row(device) {
    const presence = device.presence;
    return el(
      "tr",
      {
        dataset: { deviceId: device.device_id, presence },
        class: selected && selected.device_id === device.device_id ? "selected" : null,
      },
      el("td", {}, el("button", {
        type: "button", class: "link", onclick: () => select(device),
      }, device.device_id)),
      el("td", {}, el("span", { class: `presence presence-${presence}` },
        el("span", { "aria-hidden": "true" }, PRESENCE_MARK[presence] ?? "?"), ` ${presence}`),
        device.presence_since ? el("span", { class: "muted since" }, " since ", timeEl(device.presence_since)) : null),
      el("td", {}, timeEl(device.last_seen)),
      el("td", {}, device.role ?? "—"),
      el("td", {}, device.site ?? "—"),
      el("td", {}, device.fw ?? "—"),
    );
  }

  function select(device) {
    selected = device;
    for (const tr of body.children) {
      tr.classList.toggle("selected", tr.dataset.deviceId === device.device_id);
    }
    panel.hidden = false;
    panel.dataset.deviceId = device.device_id;
    byId("telemetry-title").textContent = `Telemetry of ${device.device_id}`;
    form.elements.metric.value = DEFAULT_METRIC[device.role] ?? "power_w";
    plot();
  }

  async function plot() {
    if (!selected) return;
    const hours = Number(form.elements.window.value);
    const to = new Date();
    const from = new Date(to.getTime() - hours * 3600 * 1000);
    chart.replaceChildren();
    byId("telemetry-caption").textContent = "loading…";
    try {
      const series = await api.get(`devices/${encodeURIComponent(selected.device_id)}/telemetry`, {
        metric: form.elements.metric.value.trim(),
        bucket: form.elements.bucket.value,
        from: from.toISOString(),
        to: to.toISOString(),
      });
      drawChart(chart, series);
      chart.dataset.points = String(series.points.length);
      byId("telemetry-caption").textContent = describeChart(series);
      showProblem(chartError, null);
    } catch (error) {
      byId("telemetry-caption").textContent = "";
      showProblem(chartError, error);
    }
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    plot();
  }, on);
  byId("devices-refresh").addEventListener("click", load, on);

  function stop() {
    listening.abort();
    selected = null;
    panel.hidden = true;
    body.replaceChildren();
    chart.replaceChildren();
  }

  return { load, stop };
}
