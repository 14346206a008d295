// Small DOM helpers. Every piece of text from the API goes in through textContent (never
// innerHTML), so nothing a phone user or RBM sends can become markup.

const SVG_NS = 'http://www.w3.org/2000/svg';

/**
 * h('div.card#x', {attrs}, ...children). attrs: `class`, `dataset`, `on` ({click: fn}), `hidden`,
 * boolean/string attributes; children: nodes, strings, numbers, arrays, null/false (skipped).
 */
export function h(tag, attrs = {}, ...children) {
  const [name, ...rest] = tag.split(/(?=[.#])/);
  const el = document.createElement(name || 'div');
  for (const part of rest) {
    if (part.startsWith('.')) el.classList.add(part.slice(1));
    else if (part.startsWith('#')) el.id = part.slice(1);
  }
  applyAttrs(el, attrs);
  append(el, children);
  return el;
}

function applyAttrs(el, attrs) {
  for (const [k, v] of Object.entries(attrs ?? {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') {
      for (const c of String(v).split(/\s+/).filter(Boolean)) el.classList.add(c);
    } else if (k === 'dataset') {
      for (const [dk, dv] of Object.entries(v)) el.dataset[dk] = String(dv);
    } else if (k === 'on') {
      for (const [ev, fn] of Object.entries(v)) el.addEventListener(ev, fn);
    } else if (k === 'text') {
      el.textContent = String(v);
    } else if (v === true) {
      el.setAttribute(k, '');
    } else {
      el.setAttribute(k, String(v));
    }
  }
}

export function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/** An SVG icon from path data (24×24 viewBox), decorative. */
export function icon(paths, cls = 'icon') {
  const svg = document.createElementNS(SVG_NS, 'svg');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('class', cls);
  svg.setAttribute('aria-hidden', 'true');
  svg.setAttribute('focusable', 'false');
  for (const d of [].concat(paths)) {
    const p = document.createElementNS(SVG_NS, 'path');
    p.setAttribute('d', d);
    svg.append(p);
  }
  return svg;
}

export const ICONS = {
  check: 'M4.5 12.5l4.5 4.5L19.5 6.5',
  checkLeft: 'M1.5 12.5l4.5 4.5L16.5 6.5',
  checkRight: 'M8.5 14.5l2.5 2.5L22.5 6.5',
  clock: ['M12 3a9 9 0 1 0 0 18a9 9 0 1 0 0-18z', 'M12 7v5l3 2'],
  alert: ['M12 3L2 20h20L12 3z', 'M12 10v4', 'M12 17h.01'],
  ban: ['M12 3a9 9 0 1 0 0 18a9 9 0 1 0 0-18z', 'M5.6 5.6l12.8 12.8'],
  hourglass: ['M6 3h12', 'M6 21h12', 'M7 3c0 5 10 5 10 9s-10 4-10 9', 'M17 3c0 5-10 5-10 9s10 4 10 9'],
  sms: ['M4 5h16v11H8l-4 4z', 'M8 10h8'],
  pin: ['M12 21s-7-6.2-7-11a7 7 0 0 1 14 0c0 4.8-7 11-7 11z', 'M12 7.5a2.5 2.5 0 1 0 0 5a2.5 2.5 0 1 0 0-5z'],
  file: ['M6 3h8l4 4v14H6z', 'M14 3v4h4'],
  reply: ['M10 8L4 13l6 5', 'M4 13h10a6 6 0 0 1 6 6'],
  close: ['M6 6l12 12', 'M18 6L6 18'],
  retry: ['M20 11a8 8 0 1 0-2.3 5.7', 'M20 4v7h-7'],
};

/** Replaces the children of `el`. */
export function replaceChildren(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

/** Shows an API error (code + message) in an aria-live region; `null` clears it. */
export function showError(el, err) {
  if (!el) return;
  if (!err) {
    el.replaceChildren();
    el.classList.remove('visible');
    return;
  }
  const code = err.code ?? 'ERROR';
  const message = err.message ?? String(err);
  replaceChildren(el, h('span.error-code', {}, code), ' ', h('span.error-message', {}, message));
  el.classList.add('visible');
}

const timeFmt = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
const fullFmt = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'medium' });
const dayFmt = new Intl.DateTimeFormat(undefined, { weekday: 'long', month: 'short', day: 'numeric' });

export const fmtTime = (ms) => (Number.isFinite(ms) ? timeFmt.format(ms) : '');
export const fmtFull = (ms) => (Number.isFinite(ms) ? fullFmt.format(ms) : '');
export const fmtDay = (ms) => (Number.isFinite(ms) ? dayFmt.format(ms) : '');

/** Milliseconds since the epoch of an RFC 3339 time (nanosecond digits allowed), NaN if none. */
export function parseTime(s) {
  if (typeof s !== 'string') return NaN;
  // Date.parse copes with milliseconds; trim longer fractions first.
  return Date.parse(s.replace(/(\.\d{3})\d+/, '$1'));
}

/** "12 KB" style size. */
export function fmtBytes(n) {
  if (!Number.isFinite(n)) return '';
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(n < 10 * 1024 ? 1 : 0)} KB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}

/** True for http(s) URLs only: nothing else goes into an href or src. */
export function safeUrl(u) {
  if (typeof u !== 'string') return null;
  try {
    const url = new URL(u);
    return url.protocol === 'https:' || url.protocol === 'http:' ? url.href : null;
  } catch {
    return null;
  }
}
