/**
 * The observable state of a voice session and the events announcing its changes: the read side of the
 * VoiceClient API, kept apart from the protocol logic that drives it. Setters (underscore-prefixed, for
 * the subclass) emit an event only when a value actually changes.
 *
 * Every event is a `CustomEvent`; its `detail` is listed in README.md.
 *
 * @module voice-state
 */

import { TranscriptStore } from "./transcript.js";
import { normalizeMetrics } from "./metrics.js";

/**
 * @typedef {"connecting" | "open" | "closed"} ConnectionState
 * @typedef {"idle" | "listening" | "thinking" | "speaking"} VoiceStatus
 */

export class VoiceState extends EventTarget {
  /** @param {{maxTranscriptMessages?: number}} [options] */
  constructor({ maxTranscriptMessages = 200 } = {}) {
    super();
    this._store = new TranscriptStore({ max: maxTranscriptMessages });
    /** @type {ConnectionState} */
    this._connection = "closed";
    /** @type {VoiceStatus} */
    this._status = "idle";
    this._interim = null;
    this._metrics = null;
    this._level = 0;
    this._muted = false;
    this._error = null;
    this._errorKind = null;
    this._errorCode = null;
    this._inCall = false;
    this._audioFormat = null;
    this._serverProtocolVersion = null;
  }

  /** @returns {ConnectionState} */
  get connection() {
    return this._connection;
  }
  get connected() {
    return this._connection === "open";
  }
  /** Server-reported pipeline state. @returns {VoiceStatus} */
  get status() {
    return this._status;
  }
  /** The conversation, oldest first; a new (frozen) array after every change. */
  get transcript() {
    return this._store.messages;
  }
  /** The user's in-progress words, or null. */
  get interimTranscript() {
    return this._interim;
  }
  /** Latest per-turn latency metrics (ms; absent fields are null), or null. */
  get metrics() {
    return this._metrics;
  }
  /** Microphone level, RMS 0..1 (0 while muted or out of a call). */
  get audioLevel() {
    return this._level;
  }
  get muted() {
    return this._muted;
  }
  /** Alias of `muted` (Cloudflare's name). */
  get isMuted() {
    return this._muted;
  }
  /** Human-readable problem, or null. */
  get error() {
    return this._error;
  }
  /** What the error is about: "connection" | "microphone" | "server" | "send" | "output" | null. */
  get errorKind() {
    return this._errorKind;
  }
  /** `code` of the last server `error` message, if any. */
  get errorCode() {
    return this._errorCode;
  }
  /** Whether a call is active (from `startCall()` until it ends, across reconnects). */
  get inCall() {
    return this._inCall;
  }
  /** `{format, sampleRate}` from the last `audio_config`, or null. */
  get audioFormat() {
    return this._audioFormat;
  }
  get serverProtocolVersion() {
    return this._serverProtocolVersion;
  }

  /**
   * Apply a server message about the conversation (welcome, transcripts, metrics, errors) to the state.
   * Call and audio messages are the subclass's business.
   * @param {{type: string, [key: string]: any}} msg
   * @returns {boolean} whether the message was one of these
   */
  _applyMessage(msg) {
    switch (msg.type) {
      case "welcome":
        this._serverProtocolVersion = msg.protocol_version ?? null;
        return true;
      case "transcript":
        if (msg.role !== "user" && msg.role !== "assistant") return true;
        if (msg.role === "user") this._setInterim(null);
        this._final(this._store.addFinal(msg.role, String(msg.text ?? "")));
        return true;
      case "transcript_interim":
        this._setInterim(msg.text ? String(msg.text) : null);
        return true;
      case "transcript_start":
        this._store.startAssistant();
        this._emitTranscript();
        return true;
      case "transcript_delta":
        this._store.appendDelta(String(msg.text ?? ""));
        this._emitTranscript();
        return true;
      case "transcript_end":
        this._final(this._store.endAssistant(msg.text));
        return true;
      case "metrics":
        this._setMetrics(normalizeMetrics(msg));
        return true;
      case "error":
        this._errorCode = msg.code ?? null;
        this._setError(String(msg.message ?? "The voice server reported an error."), "server");
        return true;
      default:
        return false;
    }
  }

  _final(message) {
    this._emitTranscript();
    this._emit("transcript", { message });
  }

  /** Dismiss the current error message. */
  clearError() {
    this._setError(null);
  }

  _emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  _emitTranscript() {
    this._emit("transcriptchange", { transcript: this._store.messages });
  }

  _setConnection(connection) {
    if (connection === this._connection) return;
    this._connection = connection;
    this._emit("connectionchange", { connection, connected: connection === "open" });
  }

  _setStatus(status) {
    if (status === this._status) return;
    this._status = status;
    this._emit("statuschange", { status });
  }

  _setInCall(inCall) {
    if (inCall === this._inCall) return;
    this._inCall = inCall;
    this._emit("callchange", { inCall });
  }

  _setInterim(text) {
    if (text === this._interim) return;
    this._interim = text;
    this._emit("interimtranscript", { text });
  }

  _setMetrics(metrics) {
    this._metrics = metrics;
    this._emit("metricschange", { metrics });
  }

  _setLevel(level) {
    if (level === this._level) return;
    this._level = level;
    this._emit("audiolevelchange", { level });
  }

  _setMuted(muted) {
    if (muted === this._muted) return;
    this._muted = muted;
    this._emit("mutechange", { muted });
  }

  /**
   * @param {string | null} message
   * @param {string | null} [kind] lets later events clear only their own kind of error (a reconnect
   *   clears a connection error but not a denied microphone)
   */
  _setError(message, kind = null) {
    if (message === this._error && kind === this._errorKind) return;
    this._error = message;
    this._errorKind = message ? kind : null;
    if (!message) this._errorCode = null;
    this._emit("error", { error: message, kind: this._errorKind, code: this._errorCode });
  }

  /** Clear the error only if it is of this kind. */
  _clearError(kind) {
    if (this._errorKind === kind) this._setError(null);
  }
}
