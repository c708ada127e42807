/**
 * The WebRTC side of a `VoiceClient` with `transport: "webrtc"`: one {@link WebRTCTransport} per call, its
 * timeout, the fallback decision, and re-establishing the connection after a loss.
 *
 * The model: the WebSocket stays the client's control connection (history, text outside a call, reconnects).
 * A call first tries WebRTC: the microphone track goes up, the agent's voice comes down on the remote track
 * (played by an `<audio>` element, which can be routed with `setSinkId`), and every JSON message of the
 * call travels over the `voice` data channel. If WebRTC cannot be set up (HTTP 501/404/405: no WebRTC on
 * the server, 503: full, ICE failure, no connection within `timeoutMs`) the call goes over the WebSocket
 * instead; failures that retrying cannot fix disable WebRTC for the rest of the client's life.
 *
 * This class only manages the links; `VoiceClient` decides what to send and reacts to the hooks.
 *
 * @module webrtc-call
 */

import { WebRTCTransport } from "./webrtc-transport.js";

export const CONNECT_TIMEOUT_MS = 10000;
/** Re-establishments after a lost connection, per call, before the call stays on the WebSocket. */
export const MAX_REESTABLISH = 3;

/**
 * Where the WebRTC offer goes, from the WebSocket URL: `ws(s)://host/prefix/agents/{agent}/{instance}?q`
 * → `{baseUrl: "http(s)://host/prefix", agent, instance, query}`. Null if the URL has no such path.
 * @param {string} wsUrl
 */
export function webrtcEndpoint(wsUrl) {
  let u;
  try {
    u = new URL(wsUrl);
  } catch {
    return null;
  }
  const m = /^(.*)\/agents\/([^/]+)\/([^/]+)\/?$/.exec(u.pathname);
  if (!m) return null;
  const secure = u.protocol === "wss:" || u.protocol === "https:";
  return {
    baseUrl: `${secure ? "https:" : "http:"}//${u.host}${m[1]}`,
    agent: decodeURIComponent(m[2]),
    instance: decodeURIComponent(m[3]),
    query: Object.fromEntries(u.searchParams),
  };
}

/** The signaling URL (what WebRTCTransport POSTs to). */
export function signalingUrl({ baseUrl, agent, instance, query }) {
  const path = `/agents/${encodeURIComponent(agent)}/${encodeURIComponent(instance)}/webrtc`;
  const q = new URLSearchParams(query || {}).toString();
  return baseUrl.replace(/\/+$/, "") + path + (q ? `?${q}` : "");
}

/**
 * Why a WebRTC attempt failed, for `transportchange` and `stats`: `{code, reason, permanent, status}`.
 * `permanent`: retrying cannot help (the server has no WebRTC, the browser has none, the offer is refused).
 * @param {any} err from WebRTCTransport.connect (`.status` = HTTP status) or the timeout
 */
export function classifyFailure(err) {
  const status = typeof err?.status === "number" ? err.status : null;
  const detail = err?.message ? `: ${err.message}` : "";
  const out = (code, reason, permanent) => ({ code, reason, permanent, status });
  if (err?.code === "timeout") return out("timeout", err.message, false);
  if (err?.code === "unsupported") return out("unsupported", err.message, true);
  if (status === 501) return out("unavailable", "WebRTC is not installed on the server (HTTP 501)", true);
  if (status === 404 || status === 405) {
    return out("unavailable", `The server has no WebRTC endpoint here (HTTP ${status})`, true);
  }
  if (status === 503) return out("busy", "The server has no room for another WebRTC connection (HTTP 503)", false);
  if (status === 400) return out("refused", `The server refused the WebRTC offer (HTTP 400)${detail}`, true);
  if (status !== null) return out("http", `WebRTC signaling failed (HTTP ${status})${detail}`, false);
  return out("failed", `WebRTC connection failed${detail}`, false);
}

/**
 * What a close of a live connection means for the call: "ended" (the server ended it on purpose: 1000 the
 * agent hung up, 1008 policy) or "lost" (1001 server going away, 1006 network/ICE: worth re-establishing).
 * @param {{code?: number}} info
 */
export function closeOutcome(info) {
  return info?.code === 1000 || info?.code === 1008 ? "ended" : "lost";
}

/**
 * @typedef {object} WebRTCCallOptions
 * @property {{baseUrl: string, agent: string, instance: string, query: object} | null} endpoint
 * @property {(sdp: string) => string} [offerFilter]
 * @property {RTCIceServer[]} [iceServers] default: asked from the server (GET on the signaling URL)
 * @property {number} [timeoutMs=10000] give up on an attempt (and fall back) after this long
 * @property {HTMLAudioElement} [audioElement] plays the agent's voice (default: a new, detached `Audio`)
 * @property {string} [sinkId] output device for the audio element
 * @property {boolean} [playback=true] false: the remote track is received but muted (dictation)
 * @property {typeof fetch} [fetch]
 * @property {typeof RTCPeerConnection} [RTCPeerConnection]
 * @property {(options: object) => WebRTCTransport} [createTransport] replace the transport (tests)
 */

/**
 * @typedef {object} WebRTCCallHooks
 * @property {() => void} onOpen the data channel of a new connection opened (send hello/start_call)
 * @property {(data: string) => void} onMessage a JSON message from the server (raw text)
 * @property {(failure: ReturnType<typeof classifyFailure>) => void} onFallback an attempt failed
 * @property {(info: {code: number, reason: string}, outcome: "ended" | "lost") => void} onClose a live
 *   connection closed (not by us)
 * @property {(message: string) => void} [onAudioBlocked] the browser's autoplay policy blocked the agent's voice
 */

export class WebRTCCall {
  /**
   * @param {WebRTCCallOptions} options
   * @param {WebRTCCallHooks} hooks
   */
  constructor(options, hooks) {
    this.options = {
      ...options,
      timeoutMs: options.timeoutMs ?? CONNECT_TIMEOUT_MS,
      playback: options.playback ?? true,
    };
    this.hooks = hooks;
    /** @type {WebRTCTransport | null} the open connection */
    this.transport = null;
    /** @type {ReturnType<typeof classifyFailure> | null} set by a permanent failure: no more attempts */
    this.disabled = null;
    this.stats = { attempts: 0, opens: 0, fallbacks: 0, losses: 0, last: null };
    this._busy = false; // an attempt is in progress
    this._pending = null; // its transport, once created
    this._gen = 0;
    this._fellBack = false; // this call went to the WebSocket
    this._reestablish = 0; // this call's re-establishments
    this._mic = null;
    this._muted = false;
    this._sinkId = options.sinkId;
    this._element = null;
    this._unblock = null;
  }

  /** The data channel is open: protocol messages go over it. */
  get live() {
    return !!this.transport?.connected;
  }
  /** An attempt is in progress. */
  get busy() {
    return this._busy;
  }
  /** Same meaning as on the other transports, so VoiceClient can send through either. */
  get connected() {
    return this.live;
  }
  /** The `<audio>` element playing the agent's voice (created on first use). */
  get audioElement() {
    if (!this._element) {
      const Ctor = globalThis.Audio;
      this._element = this.options.audioElement ?? (Ctor ? new Ctor() : null);
      if (this._element) {
        this._element.autoplay = true;
        this._element.muted = !this.options.playback;
        if (this._sinkId && this._element.setSinkId) this._element.setSinkId(this._sinkId).catch(() => {});
      }
    }
    return this._element;
  }

  /** Whether the current call should (re)try WebRTC rather than use the WebSocket. */
  wantsCall() {
    return !this.disabled && !this._fellBack && !this.busy && !this.live && this._reestablish <= MAX_REESTABLISH;
  }

  sendJSON(message) {
    return this.live ? this.transport.send(message) : false;
  }

  /**
   * Try to connect for the current call, sending `mic`'s track. Exactly one of the hooks `onOpen` or
   * `onFallback` follows (unless {@link WebRTCCall#endCall} comes first).
   * @param {MediaStream | null} mic
   */
  attempt(mic) {
    if (this.busy || this.live) return;
    this._mic = mic;
    this._applyMute();
    this._busy = true;
    const gen = ++this._gen;
    this.stats.attempts += 1;
    const { endpoint, timeoutMs } = this.options;
    const fail = (err) => {
      if (gen !== this._gen) return;
      this._gen += 1; // later events of this attempt are stale
      clearTimeout(timer);
      const t = this._pending;
      this._pending = null;
      this._busy = false;
      if (t) this._quietClose(t);
      const failure = classifyFailure(err);
      if (failure.permanent) this.disabled = failure;
      this._fellBack = true;
      this.stats.fallbacks += 1;
      this.stats.last = failure;
      this.hooks.onFallback(failure);
    };
    const timer = (this._timer = setTimeout(() => {
      const message = `WebRTC did not connect within ${timeoutMs / 1000} s`;
      fail(Object.assign(new Error(message), { code: "timeout" }));
    }, timeoutMs));
    const PC = this.options.RTCPeerConnection ?? globalThis.RTCPeerConnection;
    if (!endpoint || (!PC && !this.options.createTransport)) {
      const why = endpoint ? "This browser has no WebRTC" : "The server URL has no /agents/{agent}/{instance} path";
      queueMicrotask(() => fail(Object.assign(new Error(why), { code: "unsupported" })));
      return;
    }
    this._connect(gen, PC).then(
      (t) => {
        if (gen !== this._gen) return this._quietClose(t);
        clearTimeout(timer);
        this._pending = null;
        this._busy = false;
        this.transport = t;
        this.stats.opens += 1;
        this.hooks.onOpen();
      },
      fail,
    );
  }

  async _connect(gen, PC) {
    const { endpoint } = this.options;
    const doFetch = this.options.fetch ?? globalThis.fetch?.bind(globalThis);
    let iceServers = this.options.iceServers;
    if (!iceServers) {
      // Also a quick check that the server speaks WebRTC at all, before any ICE gathering.
      const res = await doFetch(signalingUrl(endpoint), { method: "GET" });
      if (!res.ok) throw Object.assign(new Error(res.statusText || `HTTP ${res.status}`), { status: res.status });
      iceServers = (await res.json())?.iceServers ?? [];
    }
    if (gen !== this._gen) throw new Error("stale attempt");
    const options = {
      baseUrl: endpoint.baseUrl,
      agent: endpoint.agent,
      instance: endpoint.instance,
      query: endpoint.query,
      iceServers,
      parse: false,
      audioElement: this.audioElement,
      offerFilter: this.options.offerFilter,
      fetch: doFetch,
      RTCPeerConnection: PC,
    };
    const t = this.options.createTransport ? this.options.createTransport(options) : new WebRTCTransport(options);
    this._pending = t;
    t.onmessage = (data) => {
      if (this.transport === t) this.hooks.onMessage(data);
    };
    t.onclose = (info) => this._onClose(t, info);
    t.onerror = (err) => this._onError(err);
    t.attachMicrophone(this._mic);
    await t.connect();
    return t;
  }

  _onClose(t, info) {
    if (this.transport !== t) return;
    this.transport = null;
    const outcome = closeOutcome(info);
    if (outcome === "lost") {
      this._reestablish += 1;
      this.stats.losses += 1;
    }
    this.hooks.onClose({ code: info?.code ?? 1006, reason: info?.reason ?? "" }, outcome);
  }

  _onError(err) {
    if (err?.name !== "NotAllowedError" || !this.hooks.onAudioBlocked) return;
    // Autoplay blocked (no user gesture yet): play on the next click or key press.
    this.hooks.onAudioBlocked("The browser blocked the agent's audio. Click the page to hear it.");
    if (this._unblock || !globalThis.addEventListener) return;
    this._unblock = () => {
      globalThis.removeEventListener("pointerdown", this._unblock, true);
      globalThis.removeEventListener("keydown", this._unblock, true);
      this._unblock = null;
      this.audioElement?.play?.()?.catch?.(() => {});
    };
    globalThis.addEventListener("pointerdown", this._unblock, true);
    globalThis.addEventListener("keydown", this._unblock, true);
  }

  /** End the call's WebRTC side: close the connection (the server ends its call) and reset per-call state. */
  endCall() {
    this._gen += 1;
    clearTimeout(this._timer);
    const t = this.transport ?? this._pending;
    this.transport = this._pending = null;
    this._busy = false;
    if (t) this._quietClose(t);
    this._fellBack = false;
    this._reestablish = 0;
    this._mic = null;
  }

  _quietClose(t) {
    t.onclose = t.onmessage = t.onopen = null;
    t.onerror = () => {};
    try {
      t.close(1000, "client ended the call");
    } catch {
      /* already closed */
    }
  }

  /** Mute by disabling the microphone track: WebRTC then sends silence (and keeps the connection alive). */
  setMuted(muted) {
    this._muted = !!muted;
    this._applyMute();
  }

  _applyMute() {
    for (const track of this._mic?.getAudioTracks?.() ?? []) track.enabled = !this._muted;
  }

  /**
   * Route the agent's voice to an output device (`HTMLMediaElement.setSinkId`). Resolves false where the
   * browser can't; rejects if the switch fails.
   * @param {string} sinkId
   */
  async setSinkId(sinkId) {
    this._sinkId = sinkId;
    const el = this._element;
    if (!el) return typeof globalThis.HTMLMediaElement?.prototype?.setSinkId === "function";
    if (typeof el.setSinkId !== "function") return false;
    await el.setSinkId(sinkId);
    return true;
  }
}
