// Small DOM helpers shared by the player client and the dashboard (no framework).

/**
 * Event handlers of the elements `h` made, by element. A listener looks its handler up when the
 * event arrives, so `morph` can hand a kept element the new handlers (which see the new state)
 * without adding or removing listeners.
 * @type {WeakMap<EventTarget, Record<string, (event: Event) => void>>}
 */
const handlers = new WeakMap();

/** @param {Event} event */
function dispatch(event) {
  const handler = handlers.get(event.currentTarget)?.[event.type];
  if (handler) handler.call(event.currentTarget, event);
}

/**
 * Create an element. `props` keys: `class`, `text`, `dataset` (object; null values skipped), `on` (object of event
 * handlers), `attrs` (object of attributes); any other key is set as a property.
 * Children may be strings, nodes, arrays of those, or null/false (skipped).
 */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") el.className = Array.isArray(value) ? value.filter(Boolean).join(" ") : value;
    else if (key === "text") el.textContent = value;
    else if (key === "dataset") {
      for (const [name, v] of Object.entries(value)) if (v !== undefined && v !== null) el.dataset[name] = v;
    }
    else if (key === "on") {
      handlers.set(el, value);
      for (const name of Object.keys(value)) el.addEventListener(name, dispatch);
    }
    else if (key === "attrs") for (const [name, v] of Object.entries(value)) {
      if (v !== undefined && v !== null && v !== false) el.setAttribute(name, v === true ? "" : String(v));
    }
    else el[key] = value;
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : String(child));
  }
}

/** Replace all children of `el`. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/**
 * Make `el`'s children look like `children`, as `fill` would, but keep every node that can stay:
 * an element of the same tag gets the new attributes, handlers and children; a text node the new
 * text. The page redraws on every push; replacing a whole board made the browser lay out and
 * paint all of it again (about 30 ms of CPU a move on each page), and dropped focus and scroll
 * positions that `morph` keeps. Form fields are replaced, not patched: their state (value,
 * checked) is not in their attributes.
 */
export function morph(el, ...children) {
  const fresh = document.createElement("div");
  append(fresh, children);
  patchChildren(el, [...fresh.childNodes]);
  return el;
}

const REPLACED = new Set(["INPUT", "TEXTAREA", "SELECT", "OPTION", "DETAILS"]);

/** @param {Element} parent @param {Node[]} wanted */
function patchChildren(parent, wanted) {
  const have = [...parent.childNodes];
  wanted.forEach((node, i) => {
    const old = have[i];
    if (!old) parent.append(node);
    else if (!patchNode(old, node)) old.replaceWith(node);
  });
  for (const extra of have.slice(wanted.length)) extra.remove();
}

/** Make `old` into `node` in place; false when it cannot be (another kind of node). */
function patchNode(old, node) {
  if (old.nodeType !== node.nodeType || old.nodeName !== node.nodeName) return false;
  if (!(old instanceof Element) || !(node instanceof Element)) {
    if (old.nodeValue !== node.nodeValue) old.nodeValue = node.nodeValue;
    return true;
  }
  if (REPLACED.has(old.nodeName)) return false;
  for (const { name } of [...old.attributes]) if (!node.hasAttribute(name)) old.removeAttribute(name);
  for (const { name, value } of node.attributes) if (old.getAttribute(name) !== value) old.setAttribute(name, value);
  const on = handlers.get(node);
  if (on) {
    handlers.set(old, on);
    for (const name of Object.keys(on)) old.addEventListener(name, dispatch);
  } else handlers.delete(old);
  patchChildren(old, [...node.childNodes]);
  return true;
}

export function $(selector, root = document) {
  return root.querySelector(selector);
}

export function show(el, visible) {
  el.hidden = !visible;
}

/** "3 s ago", "2 min ago" for a Date.now()-style millisecond time. */
export function ago(ms, now = Date.now()) {
  const s = Math.max(0, Math.round((now - ms) / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  return `${Math.round(s / 3600)} h ago`;
}
