/**
 * The conversation as the client shows it: final messages, the assistant message being streamed, and the
 * server's stored history (which replaces the local list on every (re)connect).
 *
 * Every change produces a new array (never mutated in place), so UI frameworks that compare by identity
 * (React state) see updates.
 *
 * @module transcript
 */

/**
 * @typedef {object} TranscriptMessage
 * @property {string} id server id for stored messages, `local-N` for ones seen live this session
 * @property {"user" | "assistant"} role
 * @property {string} text
 * @property {boolean} interrupted the user cut this reply off (stored text is what they heard)
 * @property {number} createdAt ms since the epoch
 * @property {boolean} pending an assistant message still being streamed
 */

let localIds = 0;

export class TranscriptStore {
  /** @param {{max?: number}} [options] keep at most `max` messages (oldest dropped) */
  constructor({ max = 200 } = {}) {
    this.max = max;
    /** @type {readonly TranscriptMessage[]} */
    this.messages = Object.freeze([]);
    this._seq = 0; // bumps on every local change; orders live messages against a history sync
    /** @type {WeakMap<TranscriptMessage, number>} */
    this._born = new WeakMap();
    /** @type {TranscriptMessage | null} the assistant message between transcript_start and transcript_end */
    this._open = null;
  }

  _make(role, text, extra = {}) {
    const msg = {
      id: `local-${++localIds}`,
      role,
      text,
      interrupted: false,
      createdAt: Date.now(),
      pending: false,
      ...extra,
    };
    this._born.set(msg, ++this._seq);
    return msg;
  }

  _set(list) {
    const trimmed = list.length > this.max ? list.slice(list.length - this.max) : list;
    this.messages = Object.freeze(trimmed);
  }

  /** Replace one message object by an updated copy, keeping its identity bookkeeping. */
  _replace(old, patch) {
    const next = { ...old, ...patch };
    this._born.set(next, this._born.get(old) ?? ++this._seq);
    if (this._open === old) this._open = next;
    this._set(this.messages.map((m) => (m === old ? next : m)));
    return next;
  }

  /**
   * A complete message (`transcript`).
   * @param {"user" | "assistant"} role
   * @param {string} text
   */
  addFinal(role, text) {
    const msg = this._make(role, text);
    this._set([...this.messages, msg]);
    return msg;
  }

  /** `transcript_start`: an assistant message begins streaming. */
  startAssistant() {
    if (this._open) this.endAssistant(this._open.text); // a missing transcript_end must not leave it open
    const msg = this._make("assistant", "", { pending: true });
    this._open = msg;
    this._set([...this.messages, msg]);
    return msg;
  }

  /**
   * `transcript_delta`: append to the assistant message being streamed (or, for servers that skip
   * transcript_start, to the last assistant message if it is the latest message; else start one).
   * @param {string} text
   */
  appendDelta(text) {
    const target = this._open ?? this._lastAssistantIfLatest();
    if (!target) {
      const msg = this.startAssistant();
      return this._replace(msg, { text });
    }
    return this._replace(target, { text: target.text + text });
  }

  /**
   * `transcript_end`: the final full text of the streamed assistant message.
   * @param {string} text
   */
  endAssistant(text) {
    const target = this._open ?? this._lastAssistantIfLatest();
    this._open = null;
    if (!target) return this.addFinal("assistant", text);
    return this._replace(target, { text: typeof text === "string" ? text : target.text, pending: false });
  }

  /** Mark the reply the user just cut off. Only the latest message, and only if it is the agent's. */
  markInterrupted() {
    const last = this.messages[this.messages.length - 1];
    if (!last || last.role !== "assistant" || last.interrupted) return false;
    this._replace(last, { interrupted: true });
    return true;
  }

  _lastAssistantIfLatest() {
    const last = this.messages[this.messages.length - 1];
    return last && last.role === "assistant" ? last : null;
  }

  /**
   * Note the start of a history fetch; pass the token to {@link TranscriptStore#applyHistory}.
   * @returns {number}
   */
  beginSync() {
    return this._seq;
  }

  /**
   * Replace the list with the server's stored history. Messages that arrived live *after* the fetch was
   * started, and the assistant message still streaming, are kept after it (unless the history already
   * ends with the same text), so a sync racing live traffic doesn't drop or duplicate anything visible.
   * @param {Array<{id?: unknown, role: string, content?: string, text?: string, interrupted?: boolean,
   *   created_at?: number}>} rows the `messages` array from `GET .../messages`
   * @param {number} token from {@link TranscriptStore#beginSync}
   */
  applyHistory(rows, token) {
    const history = [];
    for (const row of rows || []) {
      if (row.role !== "user" && row.role !== "assistant") continue;
      const msg = {
        id: row.id !== undefined && row.id !== null ? String(row.id) : `local-${++localIds}`,
        role: row.role,
        text: String(row.content ?? row.text ?? ""),
        interrupted: Boolean(row.interrupted),
        createdAt: typeof row.created_at === "number" ? row.created_at * 1000 : Date.now(),
        pending: false,
      };
      this._born.set(msg, 0);
      history.push(msg);
    }
    const tail = history.slice(-4);
    const inHistory = (m) => tail.some((h) => h.role === m.role && h.text === m.text);
    const live = this.messages.filter(
      (m) => ((this._born.get(m) ?? 0) > token || m === this._open) && !inHistory(m),
    );
    this._set([...history, ...live]);
  }

  /** Forget everything. */
  clear() {
    this._open = null;
    this._set([]);
  }
}
