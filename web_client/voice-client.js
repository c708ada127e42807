/**
 * VoiceClient: the browser side of the voice protocol (compatible with Cloudflare's @cloudflare/voice v1,
 * plus the `playback_ack` extension), framework-agnostic. UI code reads its state and listens to its
 * events; see README.md for the full list.
 *
 * ```js
 * import { VoiceClient } from "./voice-client.js";
 * const client = new VoiceClient({ agent: "assistant", instance: "demo" });
 * client.addEventListener("transcriptchange", (e) => render(e.detail.transcript));
 * client.connect();
 * button.onclick = () => client.startCall(); // from a click: browsers only start audio on a gesture
 * ```
 *
 * @module voice-client
 */

import { createTransport } from "./lib/transport.js";
import { socketUrl, messagesUrl, displayHost } from "./lib/url.js";
import { VoiceState } from "./lib/voice-state.js";
import { normalizeMetrics } from "./lib/metrics.js";
import { frameSamplesFor } from "./lib/pcm.js";
import { micErrorMessage, supportsSinkId } from "./lib/audio-engine.js";
import { CallAudio } from "./lib/call-audio.js";

export const PROTOCOL_VERSION = 1;
const STATUSES = new Set(["idle", "listening", "thinking", "speaking"]);
const LOG_LIMIT = 500;

/** Clients that are connected or connecting, for `window.__voiceStats()`. */
const liveClients = new Set();
if (!globalThis.__voiceStats) {
  /** Diagnostics for browser tests and the console: one stats object per live VoiceClient. */
  globalThis.__voiceStats = () => [...liveClients].map((c) => c.stats);
}

/**
 * @typedef {object} VoiceClientOptions
 * @property {string} agent agent name; kebab-cased into the URL (`MyAgent` → `my-agent`)
 * @property {string} [instance="default"] conversation instance
 * @property {string} [host] `host[:port]` or `https://host`; default: the page's host
 * @property {string} [url] full WebSocket URL, overriding agent/instance/host
 * @property {Record<string, string | number | boolean | null | undefined>} [query] extra URL parameters
 * @property {"websocket" | "webrtc" | object} [transport="websocket"] `"webrtc"` is reserved; an object
 *   implementing the transport interface (lib/transport.js) is used as is
 * @property {number} [sampleRate=16000] rate of the microphone audio sent to the server
 * @property {number} [frameMs=40] microphone frame duration, 20–100 ms
 * @property {number} [prerollMs=80] agent audio buffered before playback starts
 * @property {boolean} [playback=true] play agent audio (false for dictation)
 * @property {boolean} [loadHistory=true] load the stored conversation on every (re)connect
 * @property {boolean} [bargeIn=true] interrupt the agent locally when the user talks over it
 * @property {number} [silenceThreshold=0.04] RMS for start/end-of-speech hints
 * @property {number} [silenceDurationMs=500] silence that ends an utterance (hint)
 * @property {number} [interruptThreshold=0.05] RMS that counts towards a local barge-in
 * @property {number} [interruptMs=160] sustained speech over agent audio that triggers a barge-in
 * @property {number} [maxTranscriptMessages=200]
 * @property {import("./lib/backoff.js").BackoffOptions} [reconnect] reconnect backoff tuning
 * @property {string} [inputDeviceId] microphone device
 * @property {string} [outputDeviceId] speaker device (where `AudioContext.setSinkId` exists)
 * @property {typeof fetch} [fetch] for the history request (default: global fetch)
 * @property {(options: object) => import("./lib/audio-engine.js").AudioEngine} [createAudioEngine] replace
 *   the Web Audio layer (tests)
 * @property {typeof WebSocket} [WebSocket] WebSocket implementation (tests)
 */

/**
 * The state getters (`connection`, `status`, `transcript`, `interimTranscript`, `metrics`, `audioLevel`,
 * `muted`, `error`, `inCall`, ...) and the events come from {@link VoiceState}.
 */
export class VoiceClient extends VoiceState {
  #o;
  #url;
  #transport = null;
  #callGen = 0;
  /** The microphone is open, so `start_call` may be (re)sent. */
  #micReady = false;
  /** The server acknowledged our call on this connection (audio_config or a non-idle status). */
  #serverAck = false;
  /** @type {CallAudio | null} audio path of the current call */
  #call = null;
  #everOpened = false;
  #historyGen = 0;
  #outputDeviceId;
  #frameMs;
  #log = [];
  /** Totals for this client; CallAudio adds its counters (frames, acks, barge-ins...) to the same object. */
  #stats = { opens: 0, samplesReceived: 0 };

  /** @param {VoiceClientOptions} options */
  constructor(options) {
    super({ maxTranscriptMessages: options?.maxTranscriptMessages });
    this.#o = {
      instance: "default",
      transport: "websocket",
      sampleRate: 16000,
      frameMs: 40,
      prerollMs: 80,
      playback: true,
      loadHistory: true,
      bargeIn: true,
      ...options,
    };
    this.#url = socketUrl(this.#o);
    this.#outputDeviceId = this.#o.outputDeviceId;
    // The capture worklet clamps the frame size to the protocol's 20–100 ms; time speech by the real size.
    this.#frameMs = (frameSamplesFor(this.#o.sampleRate, this.#o.frameMs) * 1000) / this.#o.sampleRate;
  }

  /** WebSocket URL in use. */
  get url() {
    return this.#url;
  }
  /** Whether agent audio is coming out of the speaker right now. */
  get playing() {
    return this.#call?.playing ?? false;
  }
  /** Last JSON messages in and out (newest last; binary audio is counted in `stats`, not logged). */
  get protocolLog() {
    return this.#log;
  }
  /** Counters for diagnostics and browser tests. */
  get stats() {
    return {
      agent: this.#o.agent,
      instance: this.#o.instance,
      url: this.#url,
      connection: this._connection,
      status: this._status,
      inCall: this._inCall,
      reconnects: Math.max(0, this.#stats.opens - 1),
      ...this.#stats,
      playing: this.playing,
      playedSamples: this.#call?.engine.played ?? this.#stats.lastAck?.played ?? 0,
      audio: this.#call?.engine.stats ?? null,
    };
  }

  // --- connection -----------------------------------------------------------------------------------

  /** Open the connection (reconnecting automatically until {@link VoiceClient#disconnect}). */
  connect() {
    if (this.#transport) return;
    const transport = createTransport(this.#o.transport, {
      url: this.#url,
      reconnect: this.#o.reconnect,
      WebSocket: this.#o.WebSocket,
    });
    transport.onopen = () => this.#onOpen();
    transport.onclose = (info) => this.#onClose(info || {});
    transport.onmessage = (data) => this.#onMessage(data);
    transport.onerror = () => {};
    this.#transport = transport;
    liveClients.add(this);
    this._setConnection("connecting");
    transport.connect();
  }

  /** End any call and close the connection for good. */
  disconnect() {
    if (this._inCall) {
      // Say goodbye now: the socket is closed below, before an awaited #stopCall would get to it.
      this.#send({ type: "end_call" });
      this.#stopCall({ notifyServer: false, flush: false });
    }
    this.#transport?.disconnect();
    this.#transport = null;
    liveClients.delete(this);
    this._setConnection("closed");
    this._clearError("connection");
  }

  #onOpen() {
    this.#everOpened = true;
    this.#stats.opens += 1;
    this.#serverAck = false;
    this._setConnection("open");
    this._clearError("connection");
    this.#send({ type: "hello", protocol_version: PROTOCOL_VERSION });
    // A reconnect is a new server-side session: resume the call on it.
    if (this._inCall && this.#micReady) this.#send({ type: "start_call" });
    if (this.#o.loadHistory) this.refreshHistory();
  }

  #onClose(info) {
    this.#serverAck = false;
    // Audio from the dead connection can't be acknowledged any more; the new one starts a new stream.
    this.#call?.newStream(this._audioFormat?.sampleRate ?? this.#o.sampleRate);
    this._setInterim(null);
    this._setStatus("idle");
    if (!this.#transport) return;
    this._setConnection(info.willRetry === false ? "closed" : "connecting");
    const host = displayHost(this.#url);
    this._setError(
      this.#everOpened
        ? "Connection to the voice server was lost. Reconnecting…"
        : `Can't reach the voice server at ${host}. Retrying…`,
      "connection",
    );
  }

  // --- calls ----------------------------------------------------------------------------------------

  /**
   * Start a call: opens the microphone and asks the server to start listening. Call it from a user
   * gesture (click). Connects first if needed; if the connection isn't open yet the call starts as soon
   * as it is. Failures (e.g. microphone denied) end the call and set `error`.
   * @returns {Promise<void>}
   */
  async startCall() {
    if (this._inCall) return;
    if (!this.#transport) this.connect();
    const gen = ++this.#callGen;
    this.#micReady = false;
    this.#serverAck = false;
    if (this._errorKind !== "connection") this._setError(null);
    this._setMetrics(null);
    this._setInCall(true);
    const call = this.#createCall();
    this.#call = call;
    try {
      await call.start();
    } catch (err) {
      if (gen !== this.#callGen) return;
      this.#stopCall({ notifyServer: false, flush: false });
      this._setError(micErrorMessage(err), "microphone");
      return;
    }
    if (gen !== this.#callGen) return;
    this.#micReady = true;
    this.#send({ type: "start_call" });
  }

  /**
   * End the call: agent audio stops (the server is told how much was heard), the microphone closes.
   * @returns {Promise<void>}
   */
  async endCall() {
    if (!this._inCall) return;
    await this.#stopCall({ notifyServer: true, flush: true });
  }

  async #stopCall({ notifyServer, flush }) {
    this.#callGen += 1;
    this.#micReady = false;
    this.#serverAck = false;
    const call = this.#call;
    this.#call = null;
    this._setLevel(0);
    this._setInterim(null);
    this._setStatus("idle");
    this._setInCall(false);
    // Flushing first sends the final playback_ack, so the stored reply matches what the user heard.
    await call?.stop({ flush: flush && this.connected });
    if (notifyServer) this.#send({ type: "end_call" });
  }

  #createCall() {
    const o = this.#o;
    return new CallAudio(
      {
        engine: {
          captureRate: o.sampleRate,
          frameMs: o.frameMs,
          prerollMs: o.prerollMs,
          inputDeviceId: o.inputDeviceId,
          sinkId: this.#outputDeviceId,
        },
        createEngine: o.createAudioEngine,
        detector: {
          silenceThreshold: o.silenceThreshold,
          silenceMs: o.silenceDurationMs,
          interruptThreshold: o.interruptThreshold,
          interruptMs: o.interruptMs,
        },
        frameMs: this.#frameMs,
        bargeIn: o.bargeIn,
        playback: o.playback,
        sampleRate: this._audioFormat?.sampleRate ?? o.sampleRate,
        stats: this.#stats,
      },
      {
        sendJSON: (message) => this.#send(message),
        sendBinary: (pcm) => !!this.#transport?.sendBinary(pcm),
        canStream: () => this._inCall && this.#micReady,
        onLevel: (level) => this._setLevel(level),
        onPlaying: (playing) => this._emit("playbackchange", { playing }),
        onAckSent: (played, reason) => this._emit("playbackack", { played, reason }),
        onBargeIn: () => {
          if (this._store.markInterrupted()) this._emitTranscript();
          this._emit("bargein", {});
        },
        onError: (message) => this._setError(message, "microphone"),
      },
    );
  }

  /** Mute or unmute the microphone (audio stops being sent; the call goes on). */
  setMuted(muted) {
    muted = !!muted;
    if (muted === this._muted) return;
    this.#call?.setMuted(muted);
    if (muted) this._setLevel(0);
    this._setMuted(muted);
  }

  /** @returns {boolean} the new muted state */
  toggleMute() {
    this.setMuted(!this._muted);
    return this._muted;
  }

  /**
   * Send a typed message; works in and out of a call (out of a call the reply is text only).
   * @param {string} text
   * @returns {boolean} whether it was sent
   */
  sendText(text) {
    const trimmed = String(text ?? "").trim();
    if (!trimmed) return false;
    if (!this.#send({ type: "text_message", text: trimmed })) {
      this._setError("Not connected to the voice server; the message was not sent.", "send");
      return false;
    }
    this._clearError("send");
    return true;
  }

  /**
   * Send any JSON message (app-level messages the server understands).
   * @param {object} message
   */
  sendJSON(message) {
    return this.#send(message);
  }

  /**
   * Play agent audio on another output device. Needs `AudioContext.prototype.setSinkId` (Chromium).
   * @param {string} deviceId from `navigator.mediaDevices.enumerateDevices()` (kind "audiooutput")
   * @returns {Promise<boolean>} false if unsupported or the switch failed (`error` says why)
   */
  async setOutputDevice(deviceId) {
    this.#outputDeviceId = deviceId;
    if (!supportsSinkId() && !this.#o.createAudioEngine) {
      this._setError("Choosing an output device is not supported in this browser.", "output");
      return false;
    }
    try {
      await this.#call?.engine.setSinkId(deviceId);
      this._clearError("output");
      return true;
    } catch (err) {
      this._setError(`Could not switch the output device: ${err?.message ?? err}`, "output");
      return false;
    }
  }

  /** Whether {@link VoiceClient#setOutputDevice} can work in this browser. */
  static get supportsOutputDevice() {
    return supportsSinkId();
  }

  /**
   * Reload the conversation from `GET .../messages`, replacing the local list. Done automatically on every
   * (re)connect; failures are ignored (history is a nicety, not a requirement).
   */
  async refreshHistory() {
    const doFetch = this.#o.fetch ?? globalThis.fetch;
    if (!doFetch) return;
    const gen = ++this.#historyGen;
    const token = this._store.beginSync();
    try {
      const res = await doFetch(messagesUrl(this.#url), { headers: { accept: "application/json" } });
      if (!res.ok) return;
      const body = await res.json();
      if (gen !== this.#historyGen || !Array.isArray(body?.messages)) return;
      this._store.applyHistory(body.messages, token);
      this._emitTranscript();
      this._emit("historyload", { count: body.messages.length });
    } catch {
      /* unreachable or not implemented: keep the local transcript */
    }
  }

  // --- incoming -------------------------------------------------------------------------------------

  #onMessage(data) {
    if (typeof data === "string") {
      let msg;
      try {
        msg = JSON.parse(data);
      } catch {
        return;
      }
      if (msg && typeof msg === "object") this.#handle(msg);
    } else if (data instanceof ArrayBuffer) {
      this.#onAudio(data);
    } else if (ArrayBuffer.isView(data)) {
      this.#onAudio(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength));
    }
  }

  #onAudio(buffer) {
    this.#stats.samplesReceived += buffer.byteLength >> 1;
    if (this._audioFormat && this._audioFormat.format !== "pcm16") return;
    this.#call?.onAudio(buffer);
  }

  #handle(msg) {
    this.#logMessage("in", msg);
    this.#call?.onServerMessage(msg);
    switch (msg.type) {
      case "welcome":
        this._serverProtocolVersion = msg.protocol_version ?? null;
        break;
      case "status":
        this.#onStatus(msg.status);
        break;
      case "audio_config": {
        this.#serverAck = true;
        const sampleRate = Number(msg.sampleRate ?? msg.sample_rate) || 16000;
        this._audioFormat = { format: msg.format ?? "pcm16", sampleRate };
        this.#stats.samplesReceived = 0;
        this.#call?.newStream(sampleRate);
        if (this._audioFormat.format !== "pcm16") {
          this._setError(`The server sends "${this._audioFormat.format}" audio; this client plays pcm16 only.`, "server");
        }
        this._emit("audioconfig", { ...this._audioFormat });
        break;
      }
      case "transcript":
        if (msg.role !== "user" && msg.role !== "assistant") break;
        if (msg.role === "user") this._setInterim(null);
        this.#final(this._store.addFinal(msg.role, String(msg.text ?? "")));
        break;
      case "transcript_interim":
        this._setInterim(msg.text ? String(msg.text) : null);
        break;
      case "transcript_start":
        this._store.startAssistant();
        this._emitTranscript();
        break;
      case "transcript_delta":
        this._store.appendDelta(String(msg.text ?? ""));
        this._emitTranscript();
        break;
      case "transcript_end":
        this.#final(this._store.endAssistant(msg.text));
        break;
      case "playback_interrupt":
        if (this._store.markInterrupted()) this._emitTranscript();
        this.#call?.flush();
        break;
      case "metrics":
        this._setMetrics(normalizeMetrics(msg));
        break;
      case "error":
        this._errorCode = msg.code ?? null;
        this._setError(String(msg.message ?? "The voice server reported an error."), "server");
        break;
      default:
        // Unknown types are ignored by the protocol; surfaced for apps with their own messages.
        this._emit("custommessage", { message: msg });
    }
  }

  #onStatus(status) {
    if (!STATUSES.has(status)) return;
    if (status === "idle" && this._inCall) {
      // After the server acknowledged our call, idle means it ended the call (e.g. the agent hung up).
      // Before that, idle is just the greeting every connection gets.
      if (this.#serverAck || this._errorKind === "server") {
        this.#stopCall({ notifyServer: false, flush: false });
        return;
      }
    } else if (status !== "idle" && this._inCall) {
      this.#serverAck = true;
    }
    this._setStatus(status);
  }

  #final(message) {
    this._emitTranscript();
    this._emit("transcript", { message });
  }

  // --- helpers --------------------------------------------------------------------------------------

  #send(message) {
    if (!this.#transport?.connected) return false;
    const ok = this.#transport.sendJSON(message) !== false;
    if (ok) this.#logMessage("out", message);
    return ok;
  }

  #logMessage(dir, message) {
    this.#log.push({ dir, at: Date.now(), message });
    if (this.#log.length > LOG_LIMIT) this.#log.splice(0, this.#log.length - LOG_LIMIT);
  }
}
