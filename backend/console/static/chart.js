// A line chart of telemetry buckets as inline SVG: one line per channel
// (the bucket averages), one dot per bucket, the min..max range as a band.

const SVG = "http://www.w3.org/2000/svg";
const WIDTH = 640;
const HEIGHT = 260;
const PAD = { left: 64, right: 16, top: 16, bottom: 40 };

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

// Channel n -> its points sorted by time.
export function byChannel(points) {
  const channels = new Map();
  for (const point of points) {
    if (!channels.has(point.channel)) channels.set(point.channel, []);
    channels.get(point.channel).push(point);
  }
  for (const list of channels.values()) list.sort((a, b) => Date.parse(a.time) - Date.parse(b.time));
  return new Map([...channels.entries()].sort((a, b) => a[0] - b[0]));
}

// [lo, hi] of every min and max, widened when flat so a constant value is drawn mid-height.
export function valueRange(points) {
  let lo = Infinity;
  let hi = -Infinity;
  for (const p of points) {
    lo = Math.min(lo, p.min, p.avg);
    hi = Math.max(hi, p.max, p.avg);
  }
  if (lo === hi) {
    const margin = Math.abs(lo) * 0.1 || 1;
    return [lo - margin, hi + margin];
  }
  return [lo, hi];
}

function number(value) {
  if (Number.isInteger(value)) return String(value);
  const magnitude = Math.abs(value);
  const digits = magnitude >= 100 ? 0 : magnitude >= 10 ? 1 : 2;
  return value.toFixed(digits);
}

const axisTime = new Intl.DateTimeFormat(undefined, {
  month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", hourCycle: "h23",
});

// Draws `series` (a TelemetryPublic answer) into the <svg> `target`.
export function drawChart(target, series) {
  target.replaceChildren();
  const points = series.points;
  const start = Date.parse(series.from);
  const end = Date.parse(series.to);
  const plotW = WIDTH - PAD.left - PAD.right;
  const plotH = HEIGHT - PAD.top - PAD.bottom;
  const x = (time) => PAD.left + ((Date.parse(time) - start) / (end - start)) * plotW;

  target.append(svg("rect", {
    class: "plot", x: PAD.left, y: PAD.top, width: plotW, height: plotH,
  }));
  target.append(
    svg("text", { class: "axis", x: PAD.left, y: HEIGHT - 12 }, axisTime.format(start)),
    svg("text", { class: "axis", x: WIDTH - PAD.right, y: HEIGHT - 12, "text-anchor": "end" },
      axisTime.format(end)),
  );
  if (points.length === 0) {
    target.append(svg("text", {
      class: "empty", x: PAD.left + plotW / 2, y: PAD.top + plotH / 2, "text-anchor": "middle",
    }, "no readings in this window"));
    return;
  }

  const [lo, hi] = valueRange(points);
  const y = (value) => PAD.top + (1 - (value - lo) / (hi - lo)) * plotH;
  target.append(
    svg("text", { class: "axis", x: PAD.left - 8, y: PAD.top + 4, "text-anchor": "end" }, number(hi)),
    svg("text", { class: "axis", x: PAD.left - 8, y: PAD.top + plotH, "text-anchor": "end" }, number(lo)),
  );

  let index = 0;
  for (const [channel, list] of byChannel(points)) {
    const group = svg("g", { class: `series series-${index % 4}`, "data-channel": channel });
    if (list.length > 1) {
      const upper = list.map((p) => `${x(p.time).toFixed(1)},${y(p.max).toFixed(1)}`);
      const lower = list.map((p) => `${x(p.time).toFixed(1)},${y(p.min).toFixed(1)}`).reverse();
      group.append(svg("polygon", { class: "band", points: [...upper, ...lower].join(" ") }));
      group.append(svg("polyline", {
        class: "line",
        points: list.map((p) => `${x(p.time).toFixed(1)},${y(p.avg).toFixed(1)}`).join(" "),
      }));
    }
    for (const p of list) {
      const dot = svg("circle", {
        class: "point", cx: x(p.time).toFixed(1), cy: y(p.avg).toFixed(1), r: 3.5,
      });
      dot.append(svg("title", {}, `channel ${channel}, ${p.time}: avg ${number(p.avg)}`
        + ` (min ${number(p.min)}, max ${number(p.max)}, ${p.count} readings)`));
      group.append(dot);
    }
    const label = channel === 0 ? "device" : `channel ${channel}`;
    group.append(svg("text", {
      // Under the plot, between the two time labels, in the series' colour.
      class: "legend", x: PAD.left + 150 + index * 110, y: HEIGHT - 12,
    }, label));
    target.append(group);
    index += 1;
  }
}

export function describeChart(series) {
  const count = series.points.length;
  if (count === 0) return `${series.metric} of ${series.device_id}: no readings in this window`;
  const [lo, hi] = valueRange(series.points);
  const channels = byChannel(series.points).size;
  return `${series.metric} of ${series.device_id}: ${count} buckets of ${series.bucket}`
    + ` on ${channels} channel${channels === 1 ? "" : "s"}, from ${number(lo)} to ${number(hi)}`;
}
