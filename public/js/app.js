// The console page: sign-in, the conversation with one number, sending, capability checks,
// message details (receipts, revoke) and dead letters. Same-origin API calls; the API key is
// used only to mint browser tokens, which every other call uses.

import { apiFetch, ApiError, phonePath, rbmErrorText } from './api.js';
import { Session } from './session.js';
import { LiveConnection } from './live.js';
import { Conversation, statusView, contentMessageOf } from './conversation.js';
import { Composer } from './composer.js';
import { DeadLetters } from './dead-letters.js';
import { h, icon, ICONS, showError, replaceChildren, fmtFull, parseTime } from './dom.js';
import {
  SIMULATOR_NUMBERS, STORAGE_PHONE, HISTORY_PAGE_SIZE, POLL_INTERVAL_MS, POLL_FOR_MS, TERMINAL_STATUSES,
} from './config.js';

const $ = (id) => document.getElementById(id);
const E164 = /^\+[1-9][0-9]{7,14}$/;

const state = {
  phone: null,
  history: 'idle', // idle | loading | ok | unavailable | error
  cursor: null,
  live: null, // LiveConnection
  liveOpen: false,
  watched: new Map(), // messageId -> poll deadline (ms)
  pollTimer: null,
  lastTyping: 0,
  selected: null,
};

// ----------------------------------------------------------------------------- session

const session = new Session({
  onToken: () => renderTokenBadge(),
  onLost: (err) => {
    stopConversation();
    conversation.reset();
    showSignIn(new ApiError(err.status, err.code, `Signed out: ${err.message}`));
  },
  onRefreshProblem: (err) => {
    const el = $('session-error');
    el.hidden = !err;
    if (err) showError(el, new ApiError(err.status, err.code, `Could not renew the console's token (${err.message}) — retrying.`));
  },
});

/** An API call with the current token; one retry with a fresh token after a 401. */
async function api(path, opts = {}) {
  try {
    return await apiFetch(path, { ...opts, bearer: await session.token() });
  } catch (err) {
    if (err instanceof ApiError && err.status === 401 && err.code === 'UNAUTHORIZED' && session.signedIn) {
      return apiFetch(path, { ...opts, bearer: await session.token({ fresh: true }) });
    }
    throw err;
  }
}

function showSignIn(err) {
  $('console-view').hidden = true;
  $('signin-view').hidden = false;
  $('signin-submit').disabled = false;
  $('signin-submit').textContent = 'Sign in';
  showError($('signin-error'), err ?? null);
  $('api-key').focus();
}

async function signIn(apiKey, agentId, { restoring = false } = {}) {
  const submit = $('signin-submit');
  submit.disabled = true;
  submit.textContent = restoring ? 'Restoring your session…' : 'Signing in…';
  showError($('signin-error'), null);
  try {
    await session.signIn(apiKey, agentId);
  } catch (err) {
    showSignIn(err);
    return;
  }
  $('api-key').value = ''; // the key lives in sessionStorage only, not in the DOM
  submit.disabled = false;
  submit.textContent = 'Sign in';
  showConsole();
}

$('signin-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const key = $('api-key').value.trim();
  const agent = $('agent-id').value.trim();
  if (!key) {
    showError($('signin-error'), new ApiError(0, 'MISSING_API_KEY', 'Enter an API key.'));
    $('api-key').focus();
    return;
  }
  signIn(key, agent);
});

$('signout').addEventListener('click', () => {
  clearInterval(badgeTimer);
  stopConversation();
  conversation.reset();
  session.signOut();
  try { sessionStorage.removeItem(STORAGE_PHONE); } catch { /* none */ }
  showSignIn(null);
});

let badgeTimer = null;
function renderTokenBadge() {
  clearInterval(badgeTimer);
  const tick = () => {
    const left = Math.max(0, Math.round(session.msLeft / 1000));
    const m = Math.floor(left / 60);
    const s = String(left % 60).padStart(2, '0');
    $('token-badge').textContent = `Token ${m}:${s}`;
    $('token-badge').title = 'Time left on the console\'s browser token (renewed automatically before it expires)';
  };
  tick();
  badgeTimer = setInterval(tick, 1000);
}

// ----------------------------------------------------------------------------- console

const conversation = new Conversation({
  list: $('messages'),
  scroller: $('conv-scroll'),
  typing: $('typing'),
  empty: $('conv-empty'),
  onSelect: (entry) => selectMessage(entry),
  onRetry: (entry) => resend(entry),
});

const composer = new Composer({
  onSend: (body) => send(body),
  onTyping: () => sendTyping(),
});

const deadLetters = new DeadLetters(session);

function showConsole() {
  $('signin-view').hidden = true;
  $('console-view').hidden = false;
  $('agent-badge').textContent = session.agentId ? `Agent ${session.agentId}` : 'Default agent';
  renderTokenBadge();
  renderSimulatorNumbers();
  let phone = null;
  try { phone = sessionStorage.getItem(STORAGE_PHONE); } catch { /* none */ }
  phone = phone || SIMULATOR_NUMBERS[0]?.number || '';
  $('phone').value = phone;
  if (E164.test(phone)) openPhone(phone);
  else composer.setEnabled(false);
  deadLetters.reset();
  deadLetters.load();
  $('phone').focus();
}

function renderSimulatorNumbers() {
  $('sim-numbers').replaceChildren(...SIMULATOR_NUMBERS.map((n) => h('option', { value: n.number, label: n.label })));
  $('sim-list').replaceChildren(...SIMULATOR_NUMBERS.map((n) => h('li', {},
    h('button.sim-btn', { type: 'button', dataset: { number: n.number }, on: { click: () => { $('phone').value = n.number; openPhone(n.number); } } },
      h('span.sim-number.mono', {}, n.number), h('span.sim-label', {}, n.label)))));
  if (SIMULATOR_NUMBERS.length === 0) $('sim-list').append(h('li.muted.small', {}, 'Run make dev for the local simulator.'));
}

$('phone-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const phone = $('phone').value.replace(/[\s().-]/g, '');
  if (!E164.test(phone)) {
    showError($('phone-error'), new ApiError(0, 'INVALID_PHONE_NUMBER', 'Use E.164: + then 8 to 15 digits, like +12223334444.'));
    $('phone').setAttribute('aria-invalid', 'true');
    $('phone').focus();
    return;
  }
  $('phone').value = phone;
  openPhone(phone);
});
$('phone').addEventListener('input', () => {
  $('phone').removeAttribute('aria-invalid');
  showError($('phone-error'), null);
});

function stopConversation() {
  state.live?.stop();
  state.live = null;
  state.liveOpen = false;
  state.watched.clear();
  clearInterval(state.pollTimer);
  state.pollTimer = null;
}

function openPhone(phone) {
  stopConversation();
  showError($('phone-error'), null);
  state.phone = phone;
  state.cursor = null;
  state.selected = null;
  try { sessionStorage.setItem(STORAGE_PHONE, phone); } catch { /* none */ }
  $('conv-title').textContent = phone;
  for (const b of document.querySelectorAll('.sim-btn')) b.setAttribute('aria-pressed', String(b.dataset.number === phone));
  conversation.open(phone);
  conversation.updateEmpty('Loading the conversation…');
  renderDetail();
  replaceChildren($('cap-result'), h('p.muted.small', {}, 'Ask RBM whether this number can receive RCS.'));
  showError($('cap-error'), null);
  composer.setEnabled(true);
  composer.showSendError(null);
  $('send-note').textContent = '';
  showError($('detail-error'), null);
  setBanner(null);
  setLiveState({ state: 'off' });
  state.pollTimer = setInterval(pollWatched, POLL_INTERVAL_MS);
  loadHistory({ first: true });
}

// ----------------------------------------------------------------------------- history + live

async function loadHistory({ first = false } = {}) {
  const phone = state.phone;
  state.history = 'loading';
  showError($('history-error'), null);
  $('load-older').disabled = true;
  const qs = new URLSearchParams({ limit: String(HISTORY_PAGE_SIZE) });
  if (!first && state.cursor) qs.set('before', state.cursor);
  try {
    const { body } = await api(`${phonePath(phone, '/messages')}?${qs}`);
    if (phone !== state.phone) return;
    const messages = Array.isArray(body?.messages) ? body.messages : [];
    for (const m of messages) conversation.upsert(m, { scroll: first ? 'none' : 'keep' });
    state.cursor = typeof body?.cursor === 'string' && body.cursor ? body.cursor : null;
    $('load-older').hidden = !state.cursor;
    state.history = 'ok';
    conversation.updateEmpty('No messages with this number yet. Say hello below.');
    if (first) {
      conversation.scrollToBottom();
      startLive();
    }
  } catch (err) {
    if (phone !== state.phone) return;
    if (err instanceof ApiError && err.status === 404) {
      state.history = 'unavailable';
      conversation.updateEmpty('No history to show.');
      setBanner('warn', [
        h('p.banner-title', {}, 'History and live updates are not available on this Worker'),
        h('p.banner-detail', {}, 'GET /v1/phones/{phoneNumber}/messages answered ', h('span.error-code', {}, err.code), ` ${err.message}`),
        h('p.banner-detail', {}, 'Sending still works: the status of each message sent from this page is polled.'),
      ]);
      setLiveState({ state: 'unavailable' });
    } else {
      state.history = 'error';
      conversation.updateEmpty('');
      showError($('history-error'), err);
      if (first) startLive();
    }
  } finally {
    $('load-older').disabled = false;
  }
}

$('load-older').addEventListener('click', () => loadHistory());

/** The newest history page again, merged (a message this page has not seen yet). */
let newestTimer = null;
function refreshNewestSoon() {
  if (newestTimer || state.history !== 'ok') return;
  newestTimer = setTimeout(async () => {
    newestTimer = null;
    const phone = state.phone;
    try {
      const { body } = await api(`${phonePath(phone, '/messages')}?limit=${HISTORY_PAGE_SIZE}`);
      if (phone !== state.phone) return;
      for (const m of Array.isArray(body?.messages) ? body.messages : []) conversation.upsert(m, { scroll: 'auto' });
    } catch (err) {
      if (phone === state.phone) showError($('history-error'), err);
    }
  }, 400);
}

function startLive() {
  state.live?.stop();
  const phone = state.phone;
  state.live = new LiveConnection({
    phone,
    getToken: (o) => session.token(o),
    onFrame: (frame) => { if (phone === state.phone) onFrame(frame); },
    onState: (s) => { if (phone === state.phone) setLiveState(s); },
  });
  state.live.start();
}

$('live-retry').addEventListener('click', () => {
  if (state.history === 'unavailable') {
    setBanner(null);
    loadHistory({ first: true });
  } else if (state.live) {
    state.live.retryNow();
  } else {
    startLive();
  }
});

function onFrame(frame) {
  switch (frame.type) {
    case 'ready': {
      const msgs = Array.isArray(frame.messages) ? frame.messages : [];
      for (const m of msgs) conversation.upsert(m, { scroll: 'auto' });
      break;
    }
    case 'message.status': {
      if (typeof frame.messageId !== 'string') return;
      const known = conversation.applyStatus(frame.messageId, frame.status, frame.event ? [frame.event] : []);
      if (!known) refreshNewestSoon(); // sent by someone else (your backend): fetch it with its content
      break;
    }
    case 'message.received': {
      conversation.upsert(frame.message, { scroll: 'auto' });
      break;
    }
    case 'typing':
      conversation.setTyping(frame.active !== false);
      return;
    default:
      return; // frames of later versions
  }
  refreshDetailFromModel();
}

function setLiveState(s) {
  state.liveOpen = s.state === 'open';
  const el = $('live-state');
  el.dataset.state = s.state;
  const retry = $('live-retry');
  retry.hidden = true;
  switch (s.state) {
    case 'open':
      el.textContent = 'Live';
      setBanner(null);
      break;
    case 'connecting':
      el.textContent = s.attempt ? 'Reconnecting…' : 'Connecting…';
      break;
    case 'waiting': {
      const secs = Math.max(1, Math.round((s.retryInMs ?? 0) / 1000));
      el.textContent = `Offline — retrying in ${secs} s`;
      retry.hidden = false;
      retry.textContent = 'Reconnect now';
      if (s.attempt >= 2) {
        setBanner('warn', [h('p.banner-title', {}, 'Live updates are interrupted'),
          h('p.banner-detail', {}, `GET /v1/phones/{phoneNumber}/live: ${s.detail ?? 'no connection'}. Retrying with backoff; meanwhile the status of each message sent from this page is polled.`)]);
      }
      break;
    }
    case 'unavailable':
      el.textContent = 'Live updates unavailable';
      retry.hidden = false;
      retry.textContent = 'Try again';
      break;
    default:
      el.textContent = 'Live updates off';
  }
}

function setBanner(kind, content) {
  const el = $('conv-banner');
  if (!kind) {
    el.hidden = true;
    el.replaceChildren();
    return;
  }
  el.className = `banner banner-${kind}`;
  replaceChildren(el, icon(ICONS.alert, 'icon banner-icon'), h('div', {}, content));
  el.hidden = false;
}

// ----------------------------------------------------------------------------- sending

function newMessageId() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const x = [...b].map((v) => v.toString(16).padStart(2, '0')).join('');
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20)}`;
}

function send(body) {
  if (!state.phone) {
    composer.showSendError(new ApiError(0, 'NO_NUMBER', 'Pick a phone number first.'));
    $('phone').focus();
    return;
  }
  const messageId = newMessageId();
  const request = { phoneNumber: state.phone, messageId, ...body };
  conversation.upsert({
    direction: 'outbound', messageId, content: { contentMessage: body.contentMessage },
    at: new Date().toISOString(), local: 'sending', request,
  }, { scroll: 'bottom' });
  deliver(request, { fromComposer: true });
}

function resend(entry) {
  if (!entry?.request) return;
  conversation.upsert({ messageId: entry.messageId, local: 'sending', localError: null }, { scroll: 'none' });
  deliver(entry.request, { fromComposer: false, retry: true });
}

/** POST /v1/messages. A retry reuses the messageId, so RBM never sends one message twice. */
async function deliver(request, { fromComposer, retry = false }) {
  const { messageId } = request;
  const phone = request.phoneNumber;
  if (fromComposer) composer.setEnabled(false);
  $('send-note').textContent = '';
  try {
    const res = await api('/v1/messages', { method: 'POST', body: request });
    const b = res.body ?? {};
    if (phone !== state.phone) {
      // The operator switched numbers meanwhile: record the outcome where the message lives.
      const ok = res.status >= 200 && res.status < 300;
      conversation.patchOffscreen(phone, messageId, { status: ok ? (b.status ?? 'SENT') : 'FAILED', local: undefined, localError: undefined });
      return;
    }
    if (res.status >= 200 && res.status < 300) {
      conversation.upsert({ messageId, status: b.status ?? 'SENT', local: undefined, localError: null }, { scroll: 'none' });
      stripLocal(messageId);
      if (fromComposer) composer.reset();
      $('send-note').textContent = `Sent to ${phone}.`;
      watch(messageId);
    } else if (retry && res.status === 409) {
      // The first attempt did reach RBM (it refuses a reused messageId): it was sent.
      stripLocal(messageId, 'SENT');
      $('send-note').textContent = 'It had been sent after all.';
      watch(messageId);
    } else {
      // RBM's own refusal, relayed with its status (not the error shape).
      stripLocal(messageId, 'FAILED');
      const rbmText = rbmErrorText(b);
      const reach = b.rcsReachable === false ? ' This number cannot receive RCS now: check its capability, or add an SMS fallback.' : '';
      composer.showSendError(new ApiError(res.status, `RBM_${res.status}`,
        `RBM refused the message${rbmText ? ` (${rbmText})` : ''}.${reach}`));
    }
  } catch (err) {
    const retryable = err.status === 0 || err.status === 429 || err.status >= 500;
    if (phone !== state.phone) {
      conversation.patchOffscreen(phone, messageId, retryable
        ? { local: 'unsent', localError: `${err.code}: ${err.message}` }
        : { status: 'FAILED', local: undefined, localError: `${err.code}: ${err.message}` });
      return;
    }
    if (retryable) {
      conversation.upsert({ messageId, local: 'unsent', localError: `${err.code}: ${err.message}` }, { scroll: 'none' });
      if (fromComposer) composer.reset();
    } else {
      conversation.remove(messageId); // nothing was sent: the text stays in the composer
    }
    composer.showSendError(err);
  } finally {
    if (fromComposer) composer.setEnabled(true);
  }
  refreshDetailFromModel();
}

/** The Worker now knows the message: drop the page's own sending/unsent marks. */
function stripLocal(messageId, status) {
  const e = conversation.get(messageId);
  if (!e) return;
  const copy = { ...e };
  delete copy.local;
  delete copy.localError;
  if (status) copy.status = status;
  conversation.entries.set(messageId, copy);
  conversation.render(copy, false, 'none');
}

/** Typing indicator to the user while the operator writes (events:send), at most every 8 s. */
function sendTyping() {
  const now = Date.now();
  if (!state.phone || now - state.lastTyping < 8000) return;
  state.lastTyping = now;
  const phone = state.phone;
  api(phonePath(phone, '/events'), { method: 'POST', body: { eventType: 'IS_TYPING' } }).then(({ status, body }) => {
    if (phone === state.phone && (status < 200 || status >= 300)) {
      $('send-note').textContent = `Typing indicator not shown: RBM answered ${status}${rbmErrorText(body) ? ` (${rbmErrorText(body)})` : ''}.`;
    }
  }, (err) => {
    if (phone === state.phone) $('send-note').textContent = `Typing indicator not shown: ${err.code} ${err.message}`;
  });
}

// ----------------------------------------------------------------------------- status polling

function watch(messageId) {
  state.watched.set(messageId, Date.now() + POLL_FOR_MS);
}

let polling = false;
async function pollWatched() {
  if (polling || state.liveOpen || state.watched.size === 0) return;
  polling = true;
  try {
    for (const [id, until] of [...state.watched]) {
      const entry = conversation.get(id);
      if (!entry || Date.now() > until || TERMINAL_STATUSES.has(entry.status)) {
        state.watched.delete(id);
        continue;
      }
      try {
        const { body } = await api(`/v1/messages/${encodeURIComponent(id)}`);
        conversation.applyStatus(id, body?.status, Array.isArray(body?.events) ? body.events : []);
        refreshDetailFromModel();
      } catch (err) {
        if (!(err instanceof ApiError && err.status === 404)) {
          $('send-note').textContent = `Status check failed: ${err.code} ${err.message}`;
        }
      }
    }
  } finally {
    polling = false;
  }
}

// ----------------------------------------------------------------------------- capability

$('cap-check').addEventListener('click', async () => {
  if (!state.phone) return;
  const btn = $('cap-check');
  const phone = state.phone;
  btn.disabled = true;
  showError($('cap-error'), null);
  replaceChildren($('cap-result'), h('p.muted.small', {}, 'Asking RBM…'));
  try {
    const { status, body } = await api(phonePath(phone, '/capabilities'));
    if (phone !== state.phone) return;
    if (body?.rcsReachable === true) {
      const features = Array.isArray(body.features) ? body.features : [];
      replaceChildren($('cap-result'),
        h('p.cap-verdict.cap-yes', {}, icon(ICONS.check), 'RCS reachable'),
        features.length ? h('ul.feature-list', { 'aria-label': 'Features' }, features.map((f) => h('li.feature', {}, String(f).replace(/_/g, ' ').toLowerCase()))) : null);
    } else if (body?.rcsReachable === false) {
      replaceChildren($('cap-result'),
        h('p.cap-verdict.cap-no', {}, icon(ICONS.ban), 'Not reachable over RCS'),
        h('p.muted.small', {}, 'RBM does not know this number as an RCS user. Send with an SMS fallback.'));
    } else {
      replaceChildren($('cap-result'));
      showError($('cap-error'), new ApiError(status, `RBM_${status}`, `RBM answered ${status}${rbmErrorText(body) ? `: ${rbmErrorText(body)}` : ''}.`));
    }
  } catch (err) {
    replaceChildren($('cap-result'));
    showError($('cap-error'), err);
  } finally {
    btn.disabled = false;
  }
});

// ----------------------------------------------------------------------------- details

function selectMessage(entry) {
  if (!entry) return;
  state.selected = entry.messageId;
  conversation.select(entry.messageId);
  showError($('detail-error'), null);
  renderDetail();
  // On narrow screens the panel is below: bring it into view.
  if (window.matchMedia('(max-width: 1099px)').matches) $('detail-title').scrollIntoView({ behavior: 'smooth', block: 'start' });
  if (entry.direction === 'outbound' && !entry.local) refreshDetail();
}

function refreshDetailFromModel() {
  if (state.selected) renderDetail();
}

const EVENT_NAMES = {
  SENT: 'Accepted by RBM', SEND_FAILED: 'Refused by RBM', DELIVERED: 'Delivered to the phone', READ: 'Read by the user',
  REVOKE_REQUESTED: 'Revoke requested', TTL_EXPIRATION_REVOKED: 'Expired and revoked (TTL)',
  TTL_EXPIRATION_REVOKE_FAILED: 'Expired, revoke failed (TTL)',
};

function renderDetail() {
  const box = $('detail');
  const entry = state.selected ? conversation.get(state.selected) : null;
  $('detail-refresh').hidden = !entry || entry.direction !== 'outbound' || !!entry.local;
  if (!entry) {
    replaceChildren(box, h('p.muted.small', {}, 'Choose a message\'s time stamp to see its receipts.'));
    return;
  }
  const rows = (pairs) => h('dl.kv', {}, pairs.filter(([, v]) => v !== null && v !== undefined && v !== '').map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
  if (entry.direction === 'outbound') {
    const v = statusView(entry);
    const cm = contentMessageOf(entry.content);
    const kind = cm?.text !== undefined ? 'Text' : cm?.richCard ? 'Rich card' : 'Message';
    const events = (entry.events ?? []).map((e) => h('li.timeline-item', { dataset: { type: String(e.type ?? '') } },
      h('span.timeline-dot', { 'aria-hidden': 'true' }),
      h('div', {},
        h('p.timeline-title', {}, EVENT_NAMES[e.type] ?? String(e.type ?? 'event')),
        h('p.timeline-sub', {}, [fmtFull(parseTime(e.at)), e.source ? `via ${e.source}` : null].filter(Boolean).join(' · ')))));
    const canRevoke = !entry.local && !['READ', 'DELIVERED', 'REVOKED', 'FAILED', 'FALLBACK'].includes(entry.status);
    replaceChildren(box,
      h(`p.detail-status.${v.cls}`, {}, icon(v.icon, 'icon tick-icon'), v.label),
      rows([['Kind', kind], ['To', state.phone], ['Message ID', h('code.mono.break', {}, entry.messageId)], ['Created', fmtFull(entry.at)]]),
      h('h3.subhead', {}, 'Receipts'),
      events.length ? h('ol.timeline', {}, events) : h('p.muted.small', {}, entry.local ? 'Not accepted by the Worker yet.' : 'No receipts yet.'),
      h('div.detail-actions', {},
        h('button.btn.btn-small.btn-danger#revoke', { type: 'button', disabled: !canRevoke, on: { click: () => revoke(entry.messageId) } }, icon(ICONS.ban), 'Revoke'),
        h('span.muted.small', {}, canRevoke ? 'Withdraw it before it is delivered.' : '')));
  } else {
    const sent = (entry.readReceiptSent ?? false);
    replaceChildren(box,
      h('p.detail-status.st-inbound', {}, icon(ICONS.reply, 'icon tick-icon'), 'Received from the user'),
      rows([['Kind', entry.kind], ['From', state.phone], ['Message ID', h('code.mono.break', {}, entry.messageId)], ['Received', fmtFull(entry.at)]]),
      h('div.detail-actions', {},
        h('button.btn.btn-small#mark-read', { type: 'button', disabled: sent, on: { click: () => markRead(entry.messageId) } }, icon(ICONS.check), sent ? 'Read receipt sent' : 'Send read receipt')));
  }
}

$('detail-refresh').addEventListener('click', () => refreshDetail());

async function refreshDetail() {
  const id = state.selected;
  if (!id) return;
  showError($('detail-error'), null);
  try {
    const { body } = await api(`/v1/messages/${encodeURIComponent(id)}`);
    conversation.applyStatus(id, body?.status, Array.isArray(body?.events) ? body.events : []);
    renderDetail();
  } catch (err) {
    if (state.selected === id) showError($('detail-error'), err);
  }
}

async function revoke(id) {
  showError($('detail-error'), null);
  const btn = $('revoke');
  if (btn) btn.disabled = true;
  try {
    const { status, body } = await api(`/v1/messages/${encodeURIComponent(id)}`, { method: 'DELETE' });
    if (status >= 200 && status < 300) {
      conversation.applyStatus(id, 'REVOKED', []);
      await refreshDetail();
      $('send-note').textContent = 'Revoke requested.';
    } else {
      const why = status === 404 ? ' RBM answers 404 when the message was already delivered (or is unknown to it).' : '';
      showError($('detail-error'), new ApiError(status, `RBM_${status}`, `RBM did not revoke it${rbmErrorText(body) ? ` (${rbmErrorText(body)})` : ''}.${why}`));
      renderDetail();
    }
  } catch (err) {
    showError($('detail-error'), err);
    renderDetail();
  }
}

async function markRead(id) {
  showError($('detail-error'), null);
  try {
    const { status, body } = await api(phonePath(state.phone, '/events'), { method: 'POST', body: { eventType: 'READ', messageId: id } });
    if (status >= 200 && status < 300) {
      const e = conversation.get(id);
      if (e) conversation.entries.set(id, { ...e, readReceiptSent: true });
      renderDetail();
    } else {
      showError($('detail-error'), new ApiError(status, `RBM_${status}`, `RBM refused the read receipt${rbmErrorText(body) ? ` (${rbmErrorText(body)})` : ''}.`));
    }
  } catch (err) {
    showError($('detail-error'), err);
  }
}

// ----------------------------------------------------------------------------- boot

const stored = Session.stored();
if (stored) {
  // A reload: mint a fresh token from the key this tab kept, without showing the form meanwhile.
  $('signin-view').hidden = true;
  $('agent-id').value = stored.agentId;
  signIn(stored.apiKey, stored.agentId, { restoring: true });
} else {
  showSignIn(null);
}
