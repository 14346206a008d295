// The conversation with one phone number: outbound messages with their status ticks, the
// user's replies, a typing indicator. Messages are keyed by messageId; history pages, the live
// socket's frames, send answers and status polls all merge into the same entries, and a status
// never goes back down the Worker's precedence (READ > DELIVERED > REVOKED > EXPIRED > SENT > FAILED).

import { h, icon, ICONS, append, replaceChildren, fmtTime, fmtDay, fmtFull, fmtBytes, parseTime, safeUrl } from './dom.js';
import { STATUS_RANK, TYPING_TIMEOUT_MS } from './config.js';

/** The better of two statuses: the higher precedence; an unknown new status replaces. */
export function betterStatus(current, incoming) {
  if (!incoming) return current;
  if (!current) return incoming;
  const a = STATUS_RANK[current];
  const b = STATUS_RANK[incoming];
  if (a === undefined || b === undefined) return incoming;
  return b >= a ? incoming : current;
}

const eventKey = (e) => `${e?.type ?? ''}|${e?.at ?? ''}|${e?.eventId ?? ''}`;

/** Events of `a` and `b`, each once, oldest first. */
export function mergeEvents(a = [], b = []) {
  const seen = new Map();
  for (const e of [...a, ...b]) {
    if (e && typeof e === 'object' && !seen.has(eventKey(e))) seen.set(eventKey(e), e);
  }
  return [...seen.values()].sort((x, y) => (parseTime(x.at) || 0) - (parseTime(y.at) || 0));
}

const isFallback = (entry) => entry.status === 'FALLBACK'
  || (entry.events ?? []).some((e) => typeof e?.type === 'string' && /FALLBACK|SMS/.test(e.type));

/** How a status looks: class, words for screen readers and the details panel, icon, short text. */
export function statusView(entry) {
  if (entry.local === 'sending') return { cls: 'st-sending', label: 'Sending', icon: ICONS.clock };
  if (entry.local === 'unsent') return { cls: 'st-failed', label: 'Not sent', icon: ICONS.alert, text: 'Not sent' };
  if (isFallback(entry)) return { cls: 'st-fallback', label: 'Sent as SMS (fallback)', icon: ICONS.sms, text: 'SMS' };
  switch (entry.status) {
    case 'SENT': return { cls: 'st-sent', label: 'Sent', icon: ICONS.check };
    case 'DELIVERED': return { cls: 'st-delivered', label: 'Delivered', icon: [ICONS.checkLeft, ICONS.checkRight] };
    case 'READ': return { cls: 'st-read', label: 'Read', icon: [ICONS.checkLeft, ICONS.checkRight] };
    case 'FAILED': return { cls: 'st-failed', label: 'Failed', icon: ICONS.alert, text: 'Failed' };
    case 'REVOKED': return { cls: 'st-revoked', label: 'Revoked', icon: ICONS.ban, text: 'Revoked' };
    case 'EXPIRED': return { cls: 'st-expired', label: 'Expired', icon: ICONS.hourglass, text: 'Expired' };
    default: return { cls: 'st-other', label: String(entry.status ?? 'Unknown'), icon: ICONS.clock, text: String(entry.status ?? '') };
  }
}

/** The contentMessage of an outbound history entry (`content` may be the AgentMessage or its contentMessage). */
export function contentMessageOf(content) {
  if (!content || typeof content !== 'object') return null;
  if (content.contentMessage && typeof content.contentMessage === 'object') return content.contentMessage;
  return content;
}

function suggestionText(s) {
  if (!s || typeof s !== 'object') return null;
  const inner = s.reply ?? s.action;
  return typeof inner?.text === 'string' ? inner.text : null;
}

function renderChips(suggestions, cls = 'sent-chips') {
  const texts = (Array.isArray(suggestions) ? suggestions : []).map(suggestionText).filter((t) => t !== null);
  if (texts.length === 0) return null;
  return h(`ul.${cls}`, { 'aria-label': 'Suggestions' }, texts.map((t) => h('li.sent-chip', {}, t)));
}

function renderCard(card) {
  const c = card ?? {};
  const url = safeUrl(c.media?.contentInfo?.fileUrl);
  return h('div.rich-card', {},
    url ? h('img.card-media', { src: url, alt: c.title ? `Media of “${c.title}”` : 'Card media', loading: 'lazy', referrerpolicy: 'no-referrer' }) : null,
    !url && c.media ? h('div.card-media.card-media-placeholder', {}, icon(ICONS.file), 'Uploaded media') : null,
    h('div.card-body', {},
      c.title ? h('p.card-title', {}, c.title) : null,
      c.description ? h('p.card-desc', {}, c.description) : null,
      renderChips(c.suggestions, 'card-chips')));
}

function renderOutboundContent(entry) {
  const cm = contentMessageOf(entry.content);
  if (!cm) return [h('p.bubble.bubble-out.muted', {}, '(content not recorded)')];
  const parts = [];
  if (typeof cm.text === 'string') {
    parts.push(h('p.bubble.bubble-out', {}, cm.text));
  } else if (cm.richCard?.standaloneCard) {
    parts.push(renderCard(cm.richCard.standaloneCard.cardContent));
  } else if (Array.isArray(cm.richCard?.carouselCard?.cardContents)) {
    parts.push(h('div.carousel', {}, cm.richCard.carouselCard.cardContents.map(renderCard)));
  } else if (cm.contentInfo) {
    const url = safeUrl(cm.contentInfo.fileUrl);
    parts.push(h('p.bubble.bubble-out', {}, icon(ICONS.file), ' ',
      url ? h('a', { href: url, target: '_blank', rel: 'noopener noreferrer' }, new URL(url).pathname.split('/').pop() || url) : 'File'));
  } else if (cm.uploadedRbmFile) {
    parts.push(h('p.bubble.bubble-out', {}, icon(ICONS.file), ' ', String(cm.uploadedRbmFile.fileName ?? 'Uploaded file')));
  } else {
    parts.push(h('p.bubble.bubble-out.muted', {}, '(unsupported content)'));
  }
  parts.push(renderChips(cm.suggestions));
  return parts;
}

function renderInboundContent(entry) {
  switch (entry.kind) {
    case 'text':
      return h('p.bubble.bubble-in', {}, String(entry.text ?? ''));
    case 'suggestionResponse': {
      const s = entry.suggestionResponse ?? {};
      return h('div.bubble.bubble-in.bubble-tap', {},
        h('span.tap-label', {}, icon(ICONS.reply), s.type === 'ACTION' ? 'Tapped action' : 'Tapped suggestion'),
        h('p.tap-text', {}, String(s.text ?? entry.text ?? '')),
        s.postbackData ? h('p.tap-postback', {}, 'postbackData: ', h('code', {}, String(s.postbackData))) : null);
    }
    case 'location': {
      const loc = entry.location ?? {};
      const lat = Number(loc.latitude);
      const lon = Number(loc.longitude);
      const ok = Number.isFinite(lat) && Number.isFinite(lon);
      return h('div.bubble.bubble-in.bubble-location', {},
        h('span.loc-label', {}, icon(ICONS.pin), 'Shared location'),
        h('p.loc-coords', {}, ok ? `${lat.toFixed(5)}, ${lon.toFixed(5)}` : 'unknown'),
        ok ? h('a', { href: `https://www.openstreetmap.org/?mlat=${lat}&mlon=${lon}#map=16/${lat}/${lon}`, target: '_blank', rel: 'noopener noreferrer' }, 'Open map') : null);
    }
    case 'userFile': {
      const f = entry.userFile ?? {};
      const payload = f.payload ?? {};
      const thumb = safeUrl(f.thumbnail?.fileUri);
      const link = safeUrl(payload.fileUri);
      return h('div.bubble.bubble-in.bubble-file', {},
        thumb ? h('img.file-thumb', { src: thumb, alt: `Preview of ${payload.fileName ?? 'the file'}`, loading: 'lazy', referrerpolicy: 'no-referrer' }) : null,
        h('div.file-meta', {},
          h('span.file-name', {}, icon(ICONS.file), String(payload.fileName ?? 'File')),
          h('span.file-size', {}, [payload.mimeType, fmtBytes(Number(payload.fileSizeBytes))].filter(Boolean).join(' · ')),
          link ? h('a', { href: link, target: '_blank', rel: 'noopener noreferrer' }, 'Download') : null));
    }
    default:
      return h('p.bubble.bubble-in.muted', {}, entry.text ? String(entry.text) : `(${entry.kind ?? 'unknown'} message)`);
  }
}

export class Conversation {
  /**
   * @param {object} o
   * @param {HTMLOListElement} o.list
   * @param {HTMLElement} o.scroller
   * @param {HTMLElement} o.typing
   * @param {HTMLElement} o.empty
   * @param {(entry) => void} o.onSelect   a message's time stamp was chosen
   * @param {(entry) => void} o.onRetry    "Retry" of a message that was not sent
   */
  constructor({ list, scroller, typing, empty, onSelect, onRetry }) {
    Object.assign(this, { list, scroller, typingEl: typing, emptyEl: empty, onSelect, onRetry });
    this.byPhone = new Map(); // phone -> its entries, kept for the session (messages sent from here stay visible)
    this.entries = new Map(); // messageId -> entry, of the open phone
    this.nodes = new Map(); // messageId -> <li>
    this.typingTimer = null;
    this.selectedId = null;
  }

  /** Shows the conversation with `phone`: what this page already knows of it, then whatever merges in. */
  open(phone) {
    this.nodes.clear();
    this.list.replaceChildren();
    this.setTyping(false);
    this.selectedId = null;
    if (!this.byPhone.has(phone)) this.byPhone.set(phone, new Map());
    this.entries = this.byPhone.get(phone);
    const sorted = [...this.entries.values()].sort((a, b) => a.at - b.at || (a.messageId < b.messageId ? -1 : 1));
    for (const entry of sorted) {
      const node = this.build(entry);
      this.nodes.set(entry.messageId, node);
      this.list.append(node);
      this.updateStatusNode(node, entry);
    }
    this.daySeparators();
    this.updateEmpty();
    this.scrollToBottom();
  }

  /** Updates a message of a conversation that is not on screen (a send answered after a switch). */
  patchOffscreen(phone, id, patch) {
    const entries = this.byPhone.get(phone);
    const old = entries?.get(id);
    if (!old || entries === this.entries) return;
    const entry = { ...old, ...patch, status: betterStatus(old.status, patch.status) };
    for (const [k, v] of Object.entries(patch)) if (v === undefined) delete entry[k];
    entries.set(id, entry);
  }

  /** Forgets every conversation (sign-out). */
  reset() {
    this.byPhone.clear();
    this.entries = new Map();
    this.nodes.clear();
    this.list.replaceChildren();
    this.setTyping(false);
    this.selectedId = null;
    this.updateEmpty();
  }

  get(id) { return this.entries.get(id); }

  get size() { return this.entries.size; }

  updateEmpty(text) {
    if (text !== undefined) this.emptyEl.textContent = text;
    this.emptyEl.hidden = this.entries.size > 0;
  }

  /** Merges a message (history item, live frame, send answer); renders it. Returns the entry. */
  upsert(msg, { scroll = 'auto' } = {}) {
    if (!msg || typeof msg.messageId !== 'string' || msg.messageId === '') return null;
    const id = msg.messageId;
    const old = this.entries.get(id);
    const at = parseTime(msg.at);
    let entry;
    if (!old) {
      entry = { ...msg, at: Number.isFinite(at) ? at : Date.now(), events: mergeEvents([], msg.events) };
    } else {
      entry = {
        ...old,
        ...msg,
        at: old.at, // keep its place in the list
        status: betterStatus(old.status, msg.status),
        events: mergeEvents(old.events, msg.events),
        content: msg.content ?? old.content,
      };
      if (msg.local === undefined && old.local && msg.status) delete entry.local; // the Worker knows it now
    }
    if (entry.direction === 'inbound') this.setTyping(false);
    this.entries.set(id, entry);
    this.render(entry, !old, scroll);
    return entry;
  }

  /** A `message.status` frame or a status poll: status + one event (or the whole list). */
  applyStatus(id, status, events = []) {
    const old = this.entries.get(id);
    if (!old) return null;
    const entry = { ...old, status: betterStatus(old.status, status), events: mergeEvents(old.events, events) };
    if (entry.local === 'sending' && status) delete entry.local;
    this.entries.set(id, entry);
    this.render(entry, false, 'none');
    return entry;
  }

  remove(id) {
    this.entries.delete(id);
    this.nodes.get(id)?.remove();
    this.nodes.delete(id);
    this.daySeparators();
    this.updateEmpty();
  }

  setTyping(active) {
    clearTimeout(this.typingTimer);
    const nearBottom = this.nearBottom();
    this.typingEl.hidden = !active;
    if (active) {
      this.typingTimer = setTimeout(() => { this.typingEl.hidden = true; }, TYPING_TIMEOUT_MS);
      if (nearBottom) this.scrollToBottom();
    }
  }

  nearBottom() {
    const s = this.scroller;
    return s.scrollHeight - s.scrollTop - s.clientHeight < 80;
  }

  scrollToBottom() {
    this.scroller.scrollTop = this.scroller.scrollHeight;
  }

  select(id) {
    this.selectedId = id;
    for (const [mid, node] of this.nodes) node.classList.toggle('selected', mid === id);
  }

  // ------------------------------------------------------------------------- rendering

  render(entry, isNew, scroll) {
    const wasNearBottom = this.nearBottom();
    const prevHeight = this.scroller.scrollHeight;
    const prevTop = this.scroller.scrollTop;
    let node = this.nodes.get(entry.messageId);
    if (!node) {
      node = this.build(entry);
      this.nodes.set(entry.messageId, node);
      this.place(node, entry);
      this.daySeparators();
    } else if (builtFrom.get(node) !== contentKey(entry)) {
      // Content changed (say, an optimistic entry the Worker now describes): rebuild the body,
      // keep the <li> (and the focus of its button when it has it).
      const fresh = this.build(entry);
      const focusedMeta = node.contains(document.activeElement) && document.activeElement.classList.contains('meta-btn');
      node.replaceChildren(...fresh.childNodes);
      for (const k of Object.keys(fresh.dataset)) node.dataset[k] = fresh.dataset[k];
      node.className = fresh.className;
      builtFrom.set(node, builtFrom.get(fresh));
      if (focusedMeta) node.querySelector('.meta-btn')?.focus();
    }
    this.updateStatusNode(node, entry);
    if (entry.messageId === this.selectedId) node.classList.add('selected');
    this.updateEmpty();
    if (isNew) {
      if (scroll === 'bottom' || (scroll === 'auto' && wasNearBottom)) this.scrollToBottom();
      else if (scroll === 'keep') this.scroller.scrollTop = prevTop + (this.scroller.scrollHeight - prevHeight);
    }
  }

  build(entry) {
    const out = entry.direction === 'outbound';
    const li = h(`li.msg.${out ? 'msg-out' : 'msg-in'}`, {
      dataset: { messageId: entry.messageId, direction: entry.direction, kind: entry.kind ?? '' },
    });
    builtFrom.set(li, contentKey(entry));
    const body = out ? renderOutboundContent(entry) : [renderInboundContent(entry)];
    const meta = h('div.meta', {},
      h('button.meta-btn', { type: 'button', on: { click: () => this.onSelect?.(this.entries.get(entry.messageId)) } },
        h('time.msg-time', { datetime: new Date(entry.at).toISOString(), title: fmtFull(entry.at) }, fmtTime(entry.at)),
        out ? h('span.ticks') : null));
    append(li, [h('div.msg-body', {}, body), meta]);
    if (out && entry.local === 'unsent') {
      li.append(h('div.unsent', { role: 'group', 'aria-label': 'Message not sent' },
        h('span.unsent-text', {}, entry.localError ?? 'Not sent.'),
        h('button.btn.btn-small', { type: 'button', on: { click: () => this.onRetry?.(this.entries.get(entry.messageId)) } },
          icon(ICONS.retry), 'Retry')));
    }
    return li;
  }

  updateStatusNode(node, entry) {
    const metaBtn = node.querySelector('.meta-btn');
    if (entry.direction !== 'outbound') {
      metaBtn?.setAttribute('aria-label', `Details of the reply received at ${fmtTime(entry.at)}`);
      return;
    }
    const v = statusView(entry);
    node.dataset.status = entry.local ? entry.local.toUpperCase() : String(entry.status ?? '');
    const ticks = node.querySelector('.ticks');
    if (ticks) {
      ticks.className = `ticks ${v.cls}`;
      replaceChildren(ticks, icon(v.icon, 'icon tick-icon'), v.text ? h('span.tick-text', {}, v.text) : null,
        h('span.visually-hidden', {}, v.label));
    }
    metaBtn?.setAttribute('aria-label', `Details of the message sent at ${fmtTime(entry.at)}: ${v.label}`);
  }

  /** Inserts `node` before the first message that is later than `entry`. */
  place(node, entry) {
    let before = null;
    for (const li of this.list.children) {
      if (!li.classList.contains('msg')) continue;
      const other = this.entries.get(li.dataset.messageId);
      if (other && (other.at > entry.at || (other.at === entry.at && other.messageId > entry.messageId))) {
        before = li;
        break;
      }
    }
    this.list.insertBefore(node, before);
  }

  /** One "Monday, Dec 1" separator before the first message of each day. */
  daySeparators() {
    for (const sep of [...this.list.querySelectorAll('li.day')]) sep.remove();
    let lastDay = '';
    for (const li of [...this.list.children]) {
      const entry = this.entries.get(li.dataset.messageId);
      if (!entry) continue;
      const day = new Date(entry.at).toDateString();
      if (day !== lastDay) {
        this.list.insertBefore(h('li.day', { 'aria-hidden': 'true' }, h('span', {}, fmtDay(entry.at))), li);
        lastDay = day;
      }
    }
  }
}

/** <li> -> the contentKey it was built from. */
const builtFrom = new WeakMap();

/** What decides whether an entry's body must be rebuilt. */
function contentKey(entry) {
  return JSON.stringify([entry.direction, entry.kind ?? null, entry.local ?? null, entry.localError ?? null,
    entry.content ?? null, entry.text ?? null, entry.suggestionResponse ?? null, entry.location ?? null, entry.userFile ?? null]);
}
