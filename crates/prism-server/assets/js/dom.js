// Building and updating the page's DOM. Pages build a fresh tree on every update and `morph`
// it onto the one shown: elements that stay keep their identity, so focus, scroll positions,
// open <details> and text selections survive live updates, and nothing flickers.

const SVG_NS = "http://www.w3.org/2000/svg";

// An HTML element: h("a", {href: "#/", class: "link"}, "text", child, [more children]).
// Attributes with false/null/undefined values are left out; children may be nested arrays,
// strings, numbers or nodes (null and false are skipped). Text is never parsed as HTML.
export function h(tag, attributes, ...children) {
  return build(document.createElement(tag), attributes, children);
}

// An SVG element, as `h`.
export function s(tag, attributes, ...children) {
  return build(document.createElementNS(SVG_NS, tag), attributes, children);
}

function build(element, attributes, children) {
  for (const [name, value] of Object.entries(attributes || {})) {
    if (value === false || value === null || value === undefined) continue;
    element.setAttribute(name, value === true ? "" : String(value));
  }
  append(element, children);
  return element;
}

function append(element, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(element, child);
    else if (child instanceof Node) element.appendChild(child);
    else element.appendChild(document.createTextNode(String(child)));
  }
}

// Makes `target` (in the page) look like `source` (built fresh, same tag), reusing nodes.
export function morph(target, source) {
  syncAttributes(target, source);
  morphChildren(target, source);
}

// Children are matched by key (data-key, else data-testid) and otherwise by position and kind.
function key(node) {
  if (node.nodeType !== Node.ELEMENT_NODE) return null;
  return node.getAttribute("data-key") || node.getAttribute("data-testid");
}

function morphChildren(parent, source) {
  const keyed = new Map();
  for (const child of parent.children) {
    const k = key(child);
    if (k) keyed.set(k, child);
  }
  let cursor = parent.firstChild;
  for (const wanted of [...source.childNodes]) {
    const k = key(wanted);
    let match = null;
    if (k) {
      match = keyed.get(k) || null;
      if (match && match.nodeName !== wanted.nodeName) match = null;
      keyed.delete(k);
    } else if (cursor && !key(cursor) && sameKind(cursor, wanted)) {
      match = cursor;
    }
    if (!match) {
      parent.insertBefore(wanted, cursor);
      continue;
    }
    if (match === cursor) cursor = cursor.nextSibling;
    else parent.insertBefore(match, cursor);
    patch(match, wanted);
  }
  while (cursor) {
    const next = cursor.nextSibling;
    parent.removeChild(cursor);
    cursor = next;
  }
}

function sameKind(a, b) {
  return a.nodeType === b.nodeType && a.nodeName === b.nodeName;
}

function patch(node, wanted) {
  if (node.nodeType === Node.TEXT_NODE) {
    if (node.nodeValue !== wanted.nodeValue) node.nodeValue = wanted.nodeValue;
    return;
  }
  if (node.nodeType !== Node.ELEMENT_NODE) return;
  syncAttributes(node, wanted);
  morphChildren(node, wanted);
}

// Attributes a person changes by using the page stay as they left them.
function userOwned(element, name) {
  return (element.nodeName === "DETAILS" && name === "open") ||
    ((element.nodeName === "SELECT" || element.nodeName === "INPUT") && name === "value");
}

function syncAttributes(element, wanted) {
  for (const { name } of [...element.attributes]) {
    if (!wanted.hasAttribute(name) && !userOwned(element, name)) element.removeAttribute(name);
  }
  for (const { name, value } of wanted.attributes) {
    if (userOwned(element, name)) continue;
    if (element.getAttribute(name) !== value) element.setAttribute(name, value);
  }
}

// "42s", "5m", "3h 20m", "4d 2h": how long ago `time` (RFC 3339) was.
export function age(time, now = Date.now()) {
  if (!time) return "—";
  const seconds = Math.max(0, Math.round((now - Date.parse(time)) / 1000));
  return duration(seconds);
}

export function duration(seconds) {
  if (seconds < 60) return `${seconds}s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes}m`;
  const hours = Math.floor(minutes / 60);
  if (hours < 24) return minutes % 60 ? `${hours}h ${minutes % 60}m` : `${hours}h`;
  const days = Math.floor(hours / 24);
  return hours % 24 ? `${days}d ${hours % 24}h` : `${days}d`;
}

// A full date and time for a tooltip.
export function when(time) {
  return time ? new Date(time).toLocaleString() : "";
}

export function appHref(namespace, name) {
  return `#/namespaces/${encodeURIComponent(namespace)}/applications/${encodeURIComponent(name)}`;
}

// A bar of `value` out of `total` with its numbers in text beside it, so the numbers, not the
// colour, carry the meaning. `tone` is ok | warn | bad | info.
export function bar(value, total, label, tone) {
  const fraction = total > 0 ? Math.min(1, Math.max(0, value / total)) : 0;
  const shown = tone || (total > 0 && value >= total ? "ok" : value > 0 ? "warn" : "bad");
  return h("span", { class: "bar" },
    // The text beside it says the same to a screen reader.
    h("span", { class: "bar-track", "aria-hidden": "true" },
      h("span", { class: `bar-fill tone-${shown}`, style: `width: ${(fraction * 100).toFixed(1)}%` })),
    h("span", { class: "bar-text" }, label));
}

// What a phase or state looks like: its tone, shown with the text itself.
const TONES = {
  ok: ["Ready", "Healthy", "Complete", "StepAchieved", "Achieved", "done", "Pass", "Normal", "default", "Available"],
  info: ["Progressing", "current", "contender", "Pending", "Scaling", "Promoting"],
  warn: ["WaitingForCommand", "Paused", "NotReady", "Inconclusive", "Draining", "draining",
    "retained", "RollingBack", "Cordoned", "Warning", "Unschedulable"],
  bad: ["Degraded", "Failed", "Fail", "failed", "Unreachable", "RolledBack", "Aborted", "Invalid",
    "CrashLoopBackOff", "ImagePullBackOff", "ErrImagePull", "CreateContainerConfigError",
    "ReadinessProbeFailed", "Error"],
};

export function tone(text) {
  if (!text) return "muted";
  for (const [name, words] of Object.entries(TONES)) {
    if (words.includes(text)) return name;
  }
  // "Ready,Cordoned": the most serious part sets the tone.
  const parts = String(text).split(/[,\s]+/);
  for (const name of ["bad", "warn", "info", "ok"]) {
    if (parts.some((part) => TONES[name].includes(part))) return name;
  }
  return "muted";
}

export function badge(text, extra) {
  return h("span", { class: `badge tone-${tone(text)}`, ...extra }, text || "unknown");
}
