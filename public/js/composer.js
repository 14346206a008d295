// The message composer: text or rich card, suggestion chips, traffic type and SMS fallback.
// Builds the body of POST /v1/messages; checks Google's limits the page can see before the
// Worker does (the Worker checks them all again and its VALIDATION_FAILED is shown as is).

import { h, icon, ICONS, showError, safeUrl } from './dom.js';
import { MAX_TEXT_SUGGESTIONS, MAX_CARD_SUGGESTIONS, MAX_SUGGESTION_CHARS } from './config.js';

const $ = (id) => document.getElementById(id);

/** postbackData for a chip: its text, lower-case, non-alphanumerics as '_' (RBM allows 2048 chars). */
export const postbackFor = (text) => text.trim().toLowerCase().replace(/[^a-z0-9]+/g, '_').replace(/^_|_$/g, '') || 'reply';

export class Composer {
  /**
   * @param {object} o
   * @param {(body: object) => void} o.onSend  a valid body to send
   * @param {() => void} o.onTyping            the operator is typing (throttled by the caller)
   */
  constructor({ onSend, onTyping }) {
    this.onSend = onSend;
    this.onTyping = onTyping;
    this.form = $('composer');
    this.chips = [];
    this.el = {
      text: $('msg-text'), title: $('card-title'), media: $('card-media'), description: $('card-description'),
      modeText: $('mode-text'), modeCard: $('mode-card'), chipList: $('chip-list'), suggInput: $('sugg-input'),
      suggAdd: $('sugg-add'), suggError: $('sugg-error'), suggCount: $('sugg-count'), suggLabel: $('sugg-label'),
      traffic: $('traffic-type'), fallbackOn: $('fallback-on'), fallbackAfter: $('fallback-after'),
      fallbackText: $('fallback-text'), sendError: $('send-error'), send: $('send'),
    };
    this.form.addEventListener('submit', (ev) => { ev.preventDefault(); this.submit(); });
    for (const radio of this.form.querySelectorAll('input[name="mode"]')) {
      radio.addEventListener('change', () => this.setMode(radio.value));
    }
    this.el.suggAdd.addEventListener('click', () => this.addChip());
    this.el.suggInput.addEventListener('keydown', (ev) => {
      if (ev.key === 'Enter') { ev.preventDefault(); this.addChip(); }
    });
    this.el.suggInput.addEventListener('input', () => showError(this.el.suggError, null));
    this.el.fallbackOn.addEventListener('change', () => this.syncFallback());
    for (const el of [this.el.text, this.el.description]) {
      el.addEventListener('keydown', (ev) => {
        if (ev.key === 'Enter' && (ev.ctrlKey || ev.metaKey)) { ev.preventDefault(); this.submit(); }
      });
    }
    for (const el of [this.el.text, this.el.title, this.el.description]) {
      el.addEventListener('input', () => { showError(this.el.sendError, null); this.onTyping?.(); });
    }
    this.setMode('text');
    this.syncFallback();
  }

  get mode() { return this.form.querySelector('input[name="mode"]:checked')?.value ?? 'text'; }
  get maxChips() { return this.mode === 'card' ? MAX_CARD_SUGGESTIONS : MAX_TEXT_SUGGESTIONS; }

  setMode(mode) {
    this.el.modeText.hidden = mode !== 'text';
    this.el.modeCard.hidden = mode !== 'card';
    this.el.suggLabel.textContent = mode === 'card' ? 'Card suggestions' : 'Suggested replies';
    this.renderChips();
    showError(this.el.sendError, null);
  }

  syncFallback() {
    for (const el of this.form.querySelectorAll('[data-fallback]')) el.hidden = !this.el.fallbackOn.checked;
  }

  setEnabled(enabled) {
    this.el.send.disabled = !enabled;
  }

  addChip() {
    const text = this.el.suggInput.value.trim();
    if (text === '') {
      showError(this.el.suggError, { code: 'EMPTY', message: 'Type the suggestion first.' });
      return;
    }
    if ([...text].length > MAX_SUGGESTION_CHARS) {
      showError(this.el.suggError, { code: 'TOO_LONG', message: `A suggestion has at most ${MAX_SUGGESTION_CHARS} characters.` });
      return;
    }
    if (this.chips.length >= this.maxChips) {
      showError(this.el.suggError, { code: 'TOO_MANY', message: `At most ${this.maxChips} suggestions here.` });
      return;
    }
    if (this.chips.includes(text)) {
      showError(this.el.suggError, { code: 'DUPLICATE', message: 'That suggestion is already there.' });
      return;
    }
    this.chips.push(text);
    this.el.suggInput.value = '';
    showError(this.el.suggError, null);
    this.renderChips();
  }

  removeChip(i) {
    this.chips.splice(i, 1);
    this.renderChips();
    // Keep keyboard users in the list: focus the next chip's button, else the input.
    const buttons = this.el.chipList.querySelectorAll('button');
    (buttons[Math.min(i, buttons.length - 1)] ?? this.el.suggInput).focus();
  }

  renderChips() {
    this.el.chipList.replaceChildren(...this.chips.map((text, i) => h('li.chip', {},
      h('span.chip-text', {}, text),
      h('button.chip-remove', { type: 'button', 'aria-label': `Remove suggestion “${text}”`, on: { click: () => this.removeChip(i) } },
        icon(ICONS.close)))));
    const over = this.chips.length > this.maxChips;
    this.el.suggCount.textContent = `${this.chips.length} / ${this.maxChips}`;
    this.el.suggCount.classList.toggle('over', over);
    if (over) {
      showError(this.el.suggError, { code: 'TOO_MANY', message: `A rich card takes at most ${MAX_CARD_SUGGESTIONS} suggestions: remove ${this.chips.length - this.maxChips}.` });
    }
  }

  suggestions() {
    return this.chips.map((text) => ({ reply: { text, postbackData: postbackFor(text) } }));
  }

  /** The body for POST /v1/messages (without phoneNumber/messageId), or throws {code, message, field}. */
  build() {
    const fail = (message, field) => { throw Object.assign(new Error(message), { code: 'CHECK', field }); };
    let contentMessage;
    if (this.mode === 'text') {
      const text = this.el.text.value;
      if (text.trim() === '') fail('Write the message first.', this.el.text);
      contentMessage = { text };
      if (this.chips.length > 0) contentMessage.suggestions = this.suggestions();
    } else {
      const title = this.el.title.value.trim();
      const description = this.el.description.value.trim();
      const mediaRaw = this.el.media.value.trim();
      if (!title && !description && !mediaRaw) fail('A rich card needs a title, a description or media.', this.el.title);
      const cardContent = {};
      if (title) cardContent.title = title;
      if (description) cardContent.description = description;
      if (mediaRaw) {
        const url = safeUrl(mediaRaw);
        if (!url || !url.startsWith('https:')) fail('The media URL must be an https URL.', this.el.media);
        cardContent.media = { height: 'MEDIUM', contentInfo: { fileUrl: url } };
      }
      if (this.chips.length > MAX_CARD_SUGGESTIONS) fail(`A rich card takes at most ${MAX_CARD_SUGGESTIONS} suggestions.`, this.el.suggInput);
      if (this.chips.length > 0) cardContent.suggestions = this.suggestions();
      contentMessage = { richCard: { standaloneCard: { cardOrientation: 'VERTICAL', cardContent } } };
    }
    const body = { contentMessage };
    if (this.el.traffic.value) body.messageTrafficType = this.el.traffic.value;
    if (this.el.fallbackOn.checked) {
      const after = Number(this.el.fallbackAfter.value);
      if (!Number.isInteger(after) || after < 1) fail('SMS fallback: “After” is a whole number of seconds, at least 1.', this.el.fallbackAfter);
      const sms = this.el.fallbackText.value.trim();
      if (!sms) fail('SMS fallback: write the SMS text.', this.el.fallbackText);
      body.fallback = { afterSeconds: after, sms: { text: sms } };
    }
    return body;
  }

  submit() {
    showError(this.el.sendError, null);
    if (this.el.send.disabled) return;
    let body;
    try {
      body = this.build();
    } catch (err) {
      showError(this.el.sendError, { code: 'CHECK', message: err.message });
      err.field?.focus();
      return;
    }
    this.onSend(body);
  }

  /** After a send the Worker accepted: empty the message, keep the options. */
  reset() {
    this.el.text.value = '';
    this.el.title.value = '';
    this.el.description.value = '';
    this.el.media.value = '';
    this.chips = [];
    this.renderChips();
  }

  showSendError(err) {
    showError(this.el.sendError, err);
  }
}
