// Dead letters: GET /v1/dead-letters, POST /v1/dead-letters/{id}/replay, DELETE /v1/dead-letters/{id},
// all with the browser token (scope dead-letters:manage).

import { apiFetch, ApiError } from './api.js';
import { h, icon, ICONS, showError, fmtFull, fmtTime, parseTime } from './dom.js';
import { DEAD_LETTER_SCOPE } from './config.js';

const $ = (id) => document.getElementById(id);

export class DeadLetters {
  /** @param {import('./session.js').Session} session */
  constructor(session) {
    this.session = session;
    this.list = $('dl-list');
    this.error = $('dl-error');
    this.more = $('dl-more');
    this.refreshBtn = $('dl-refresh');
    this.cursor = null;
    this.loading = false;
    this.refreshBtn.addEventListener('click', () => this.load());
    this.more.addEventListener('click', () => this.load({ append: true }));
  }

  reset() {
    this.cursor = null;
    this.list.replaceChildren();
    this.more.hidden = true;
    showError(this.error, null);
  }

  async load({ append = false } = {}) {
    if (this.loading) return;
    showError(this.error, null);
    if (!this.session.canManageDeadLetters) {
      this.list.replaceChildren();
      showError(this.error, new ApiError(0, 'SCOPE_UNAVAILABLE',
        `This Worker did not grant “${DEAD_LETTER_SCOPE}” to the console's token, so dead letters cannot be listed from the page.`));
      this.more.hidden = true;
      return;
    }
    this.loading = true;
    this.refreshBtn.disabled = true;
    this.list.setAttribute('aria-busy', 'true');
    try {
      const qs = append && this.cursor ? `?cursor=${encodeURIComponent(this.cursor)}` : '';
      const { body } = await apiFetch(`/v1/dead-letters${qs}`, { bearer: await this.session.token() });
      const items = Array.isArray(body?.deadLetters) ? body.deadLetters : [];
      if (!append) this.list.replaceChildren();
      for (const item of items) this.list.append(this.row(item));
      if (this.list.children.length === 0) this.list.append(h('li.dl-empty.muted', {}, 'No dead letters. Every event reached your backend.'));
      this.cursor = typeof body?.cursor === 'string' && body.cursor ? body.cursor : null;
      this.more.hidden = !this.cursor;
    } catch (err) {
      showError(this.error, err);
    } finally {
      this.loading = false;
      this.refreshBtn.disabled = false;
      this.list.removeAttribute('aria-busy');
    }
  }

  row(item) {
    const deadAt = parseTime(item.deadAt);
    const title = [item.job, item.kind].filter(Boolean).join(' · ') || 'job';
    const status = h('p.dl-status.small', { 'aria-live': 'polite' });
    const li = h('li.dl-item', { dataset: { id: String(item.id ?? '') } },
      h('div.dl-main', {},
        h('p.dl-title', {}, h('span.dl-kind', {}, title), h('time.dl-time', { datetime: item.deadAt ?? '', title: fmtFull(deadAt) }, fmtTime(deadAt))),
        item.messageId ? h('p.dl-sub.mono', {}, String(item.messageId)) : null,
        h('p.dl-sub.mono.muted', {}, String(item.id ?? ''))),
      h('div.dl-actions', {},
        h('button.btn.btn-small', { type: 'button', 'aria-label': `Replay dead letter ${item.id}`, on: { click: () => this.act(li, item, 'replay', status) } }, icon(ICONS.retry), 'Replay'),
        h('button.btn.btn-small.btn-danger', { type: 'button', 'aria-label': `Delete dead letter ${item.id}`, on: { click: () => this.act(li, item, 'delete', status) } }, 'Delete')),
      status);
    return li;
  }

  async act(li, item, what, status) {
    const buttons = li.querySelectorAll('button');
    for (const b of buttons) b.disabled = true;
    showError(status, null);
    try {
      const id = encodeURIComponent(String(item.id));
      const path = what === 'replay' ? `/v1/dead-letters/${id}/replay` : `/v1/dead-letters/${id}`;
      await apiFetch(path, { method: what === 'replay' ? 'POST' : 'DELETE', bearer: await this.session.token() });
      li.classList.add('dl-done');
      status.textContent = what === 'replay' ? 'Replayed: back on the queue.' : 'Deleted.';
      setTimeout(() => {
        const next = li.nextElementSibling ?? li.previousElementSibling;
        const hadFocus = li.contains(document.activeElement);
        li.remove();
        if (this.list.children.length === 0) this.list.append(h('li.dl-empty.muted', {}, 'No dead letters. Every event reached your backend.'));
        if (hadFocus) (next?.querySelector('button') ?? this.refreshBtn).focus();
      }, 1200);
    } catch (err) {
      showError(status, err);
      for (const b of buttons) b.disabled = false;
    }
  }
}
