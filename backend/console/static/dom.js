// Small DOM and formatting helpers. Data from the API is only ever set as
// text (textContent), never parsed as HTML: titles and ids come from devices.

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") node.className = value;
    else if (name === "dataset") Object.assign(node.dataset, value);
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

export function byId(id) {
  const node = document.getElementById(id);
  if (!node) throw new Error(`console markup has no #${id}`);
  return node;
}

// A message box (role="alert") showing an error, or hidden when there is none.
export function showProblem(node, error) {
  if (!error) {
    node.hidden = true;
    node.textContent = "";
    return;
  }
  node.textContent = describeError(error);
  node.hidden = false;
}

export function describeError(error) {
  if (error && error.problem) {
    const { status, title, detail } = error.problem;
    return `${status} ${title ?? ""}: ${detail ?? ""}`.replace(/\s+:/, ":");
  }
  return error instanceof Error ? error.message : String(error);
}

const timeFormat = new Intl.DateTimeFormat(undefined, {
  year: "numeric", month: "2-digit", day: "2-digit",
  hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23",
});

// A <time> element: local time to read, the ISO value for machines and tooltips.
export function timeEl(iso) {
  if (!iso) return el("span", { class: "muted" }, "—");
  const date = new Date(iso);
  return el("time", { datetime: iso, title: iso }, timeFormat.format(date));
}

export function formatTime(iso) {
  return iso ? timeFormat.format(new Date(iso)) : "—";
}

export const SEVERITIES = ["critical", "warning", "info"];

// Severity as words and a shape, never as colour alone.
export const SEVERITY_MARK = { critical: "▲", warning: "◆", info: "●" };

export function severityBadge(severity) {
  return el(
    "span",
    { class: `sev sev-${severity}`, dataset: { severity } },
    el("span", { class: "sev-mark", "aria-hidden": "true" }, SEVERITY_MARK[severity] ?? "■"),
    severity.toUpperCase(),
  );
}
