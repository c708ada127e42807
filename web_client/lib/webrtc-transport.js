/**
 * WebRTC transport for the voice server (`voice.transport_webrtc`, mounted by `mount_webrtc`).
 *
 * Audio travels as Opus media tracks — the microphone up, the agent's voice down, with the browser's echo
 * cancellation, jitter buffer and packet-loss concealment — and the JSON protocol of docs/protocol.md travels
 * over a data channel labelled `voice`, one message per data-channel message. So the client's message handler
 * is the same as over the WebSocket; only audio differs: no binary frames, no PCM player, no `playback_ack`
 * (the server knows exactly what its track played).
 *
 * Signaling is one HTTP round trip, no trickle ICE:
 *   POST {baseUrl}/agents/{agent}/{instance}/webrtc  {"sdp", "type": "offer", "start_call"?: true}
 *     → 200 {"sdp", "type": "answer"} | 400 bad offer | 404 unknown agent | 501 no WebRTC on the server
 *       | 503 server full — `connect()` rejects with an Error whose `.status` is the HTTP status, so a caller
 *       can fall back to the WebSocket.
 *   GET  the same URL → {"iceServers": [...]}: used when no `iceServers` option is given.
 *
 * Usage:
 *   const t = new WebRTCTransport({ baseUrl: "https://voice.example.com" });
 *   t.onopen = () => t.send({ type: "start_call" });
 *   t.onmessage = (msg) => console.log(msg.type, msg);      // parsed objects (option `parse: false`: strings)
 *   t.onclose = ({ code, reason }) => {};
 *   t.attachMicrophone(await navigator.mediaDevices.getUserMedia({ audio: true }));  // before or after connect
 *   await t.connect(undefined, "assistant", "room1");       // resolves when the data channel is open
 *   document.body.append(t.audioElement);                   // optional: it plays without being in the page
 *
 * Behaviour:
 * - `onopen()` fires when the data channel opens; the server then sends `welcome` and `status: idle`. The call
 *   starts with `{type: "start_call"}` as on the WebSocket, or at once if `startCall: true` was given.
 * - The microphone may be attached later (`attachMicrophone` swaps the track in without renegotiation); until then
 *   nothing is sent upstream. Once audio has flowed, the server treats ~5 s without audio packets as a vanished
 *   peer, so keep the track attached (a muted track, `enabled = false`, still sends silence).
 * - A server-side close arrives as `{type: "close", code, reason}` (1000: the agent hung up, 1008: policy,
 *   1001: server shutting down); the transport then closes and calls `onclose({code, reason, ...})`. A failed
 *   connection reports code 1006. There is no automatic reconnection: call `connect()` again, or fall back.
 * - For drop-in use where the WebSocket transport is expected it also has `connected`, `sendJSON(obj)`,
 *   `sendBinary()` (returns false: audio goes on the track), `disconnect()`, and calls `onclose(info)` with
 *   `{code, reason, wasOpen, willRetry: false, delayMs: 0}`.
 *
 * @module webrtc-transport
 */

const DEFAULT_GATHER_TIMEOUT_MS = 5000;
const DISCONNECTED_GRACE_MS = 5000;

/**
 * @typedef {object} WebRTCTransportOptions
 * @property {string} [baseUrl] server origin, e.g. "https://voice.example.com" (default: the page's origin)
 * @property {string} [agent] agent name or kebab-case path segment (can also be given to `connect`)
 * @property {string} [instance] conversation id (can also be given to `connect`)
 * @property {Record<string, string>} [query] query parameters, passed to the agent as `call.query`
 * @property {RTCIceServer[]} [iceServers] STUN/TURN servers (default: asked from the server)
 * @property {boolean} [startCall=false] start the call as soon as the data channel opens
 * @property {boolean} [parse=true] `onmessage` receives parsed objects (false: the raw JSON strings)
 * @property {HTMLAudioElement} [audioElement] where the agent's voice plays (default: a new `Audio()`)
 * @property {(sdp: string) => string} [offerFilter] rewrite the offer SDP before it is sent (tests, munging)
 * @property {number} [gatherTimeoutMs=5000] stop waiting for ICE candidates after this long
 * @property {typeof fetch} [fetch] injectable for tests
 * @property {typeof RTCPeerConnection} [RTCPeerConnection] injectable for tests
 */

export class WebRTCTransport {
  /** @param {WebRTCTransportOptions} [options] */
  constructor(options = {}) {
    this.options = { ...options };
    this.baseUrl = options.baseUrl;
    this.agent = options.agent;
    this.instance = options.instance;
    this._fetch = options.fetch || globalThis.fetch?.bind(globalThis);
    this._PC = options.RTCPeerConnection || globalThis.RTCPeerConnection;
    /** @type {HTMLAudioElement | null} */
    this.audioElement = options.audioElement || (typeof Audio !== "undefined" ? new Audio() : null);
    if (this.audioElement) this.audioElement.autoplay = true;
    /** @type {RTCPeerConnection | null} */
    this.pc = null;
    /** @type {RTCDataChannel | null} */
    this.channel = null;
    /** @type {MediaStream | null} the agent's voice */
    this.remoteStream = null;
    /** @type {MediaStream | null} */
    this.microphone = null;
    this._sender = null;
    this._wasOpen = false;
    this._closed = true;
    this._closeInfo = null;
    this._disconnectTimer = null;
    this._rejectOpen = null;
    this.onopen = null;
    this.onmessage = null;
    this.onclose = null;
    this.onerror = null;
    /** Called with the remote MediaStream when the agent's track arrives. */
    this.ontrack = null;
  }

  /** True while the data channel is open. */
  get connected() {
    return !!this.channel && this.channel.readyState === "open";
  }

  /**
   * Use this stream's first audio track as the microphone (now, or at `connect`).
   * @param {MediaStream | null} mediaStream
   */
  attachMicrophone(mediaStream) {
    this.microphone = mediaStream;
    const track = mediaStream?.getAudioTracks?.()[0] || null;
    if (this._sender) {
      this._sender.replaceTrack(track).catch((err) => this.onerror?.(err));
    }
  }

  /**
   * Negotiate and open the connection. Resolves when the data channel is open; rejects (error `.status` = HTTP
   * status when the server refused) if the connection cannot be made.
   * @param {string} [baseUrl]
   * @param {string} [agent]
   * @param {string} [instance]
   */
  async connect(baseUrl, agent, instance) {
    if (!this._closed) throw new Error("already connected");
    if (!this._PC) throw new Error("WebRTC is not available in this environment");
    if (!this._fetch) throw new Error("fetch is not available in this environment");
    this.baseUrl = baseUrl ?? this.baseUrl ?? globalThis.location?.origin ?? "";
    this.agent = agent ?? this.agent;
    this.instance = instance ?? this.instance;
    if (!this.agent || !this.instance) throw new Error("connect needs an agent and an instance");
    this._closed = false;
    this._wasOpen = false;
    this._closeInfo = null;
    const url = this._url();
    try {
      const iceServers = this.options.iceServers ?? (await this._askIceServers(url));
      const pc = new this._PC({ iceServers });
      this.pc = pc;
      const track = this.microphone?.getAudioTracks?.()[0] || null;
      const transceiver = track
        ? pc.addTransceiver(track, { direction: "sendrecv", streams: [this.microphone] })
        : pc.addTransceiver("audio", { direction: "sendrecv" });
      this._sender = transceiver.sender;
      pc.ontrack = (event) => this._onTrack(event);
      pc.onconnectionstatechange = () => this._onConnectionState();
      const channel = pc.createDataChannel("voice", { ordered: true });
      this.channel = channel;
      const opened = new Promise((resolve, reject) => {
        this._rejectOpen = reject; // ICE failure or close() before the channel opens: see _finish
        channel.onopen = () => {
          this._wasOpen = true;
          this._rejectOpen = null;
          resolve();
          this.onopen?.();
        };
        channel.onclose = () => {
          reject(new Error("the data channel closed before it opened"));
          this._finish(this._closeInfo || { code: 1006, reason: "data channel closed" });
        };
      });
      opened.catch(() => {}); // handled below; avoid an unhandled rejection if connect() already threw
      channel.onmessage = (event) => this._onMessage(event.data);
      await pc.setLocalDescription(await pc.createOffer());
      await this._gathered(pc);
      let sdp = pc.localDescription.sdp;
      if (this.options.offerFilter) sdp = this.options.offerFilter(sdp);
      const body = { sdp, type: "offer" };
      if (this.options.startCall) body.start_call = true;
      const response = await this._fetch(url, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(body),
      });
      if (!response.ok) {
        let detail = response.statusText;
        try {
          detail = (await response.json()).detail || detail;
        } catch {
          /* not JSON */
        }
        const error = new Error(`WebRTC offer refused (${response.status}): ${detail}`);
        error.status = response.status;
        throw error;
      }
      if (this._closed) throw new Error("closed while connecting");
      await pc.setRemoteDescription(await response.json());
      await opened;
    } catch (err) {
      this._teardown();
      this._closed = true;
      throw err;
    }
  }

  /**
   * Send one protocol message (an object, or a JSON string). False when the channel is not open.
   * @param {object | string} message
   */
  send(message) {
    if (!this.connected) return false;
    this.channel.send(typeof message === "string" ? message : JSON.stringify(message));
    return true;
  }

  /** Alias of `send`, for the WebSocket transport's interface. */
  sendJSON(message) {
    return this.send(message);
  }

  /** Audio goes on the media track: binary frames are not sent. */
  sendBinary() {
    return false;
  }

  /** Hang up: close the data channel and the peer connection (the server ends the call at once). */
  close(code = 1000, reason = "client disconnect") {
    this._finish({ code, reason });
  }

  /** Alias of `close`, for the WebSocket transport's interface. */
  disconnect() {
    this.close();
  }

  /** Retry playback after the browser's autoplay policy blocked it (call from a user gesture). */
  resumeAudio() {
    return this.audioElement?.play?.();
  }

  // --- internals -------------------------------------------------------------------------------------------------

  _url() {
    const base = String(this.baseUrl).replace(/\/+$/, "");
    const path = `/agents/${encodeURIComponent(this.agent)}/${encodeURIComponent(this.instance)}/webrtc`;
    const query = new URLSearchParams(this.options.query || {}).toString();
    return base + path + (query ? `?${query}` : "");
  }

  async _askIceServers(url) {
    try {
      const response = await this._fetch(url, { method: "GET" });
      if (response.ok) return (await response.json()).iceServers || [];
    } catch {
      /* older server or network hiccup: host candidates only */
    }
    return [];
  }

  _gathered(pc) {
    if (pc.iceGatheringState === "complete") return Promise.resolve();
    const timeoutMs = this.options.gatherTimeoutMs ?? DEFAULT_GATHER_TIMEOUT_MS;
    return new Promise((resolve) => {
      let timer = null;
      const finish = () => {
        pc.removeEventListener("icegatheringstatechange", onChange);
        clearTimeout(timer);
        resolve();
      };
      const onChange = () => {
        if (pc.iceGatheringState === "complete") finish();
      };
      pc.addEventListener("icegatheringstatechange", onChange);
      // with an unreachable STUN/TURN server gathering can take long: offer what we have by then
      timer = setTimeout(finish, timeoutMs);
    });
  }

  _onTrack(event) {
    if (event.track.kind !== "audio") return;
    const stream = event.streams?.[0] || new MediaStream([event.track]);
    this.remoteStream = stream;
    if (this.audioElement) {
      this.audioElement.srcObject = stream;
      const playing = this.audioElement.play?.();
      playing?.catch?.((err) => this.onerror?.(err)); // autoplay blocked: call resumeAudio() on a gesture
    }
    this.ontrack?.(stream);
  }

  _onMessage(data) {
    if (typeof data !== "string") return; // the server only sends JSON text
    let message;
    try {
      message = JSON.parse(data);
    } catch {
      return;
    }
    if (message && message.type === "close") {
      this._closeInfo = { code: message.code ?? 1000, reason: message.reason ?? "" };
      this._finish(this._closeInfo);
      return;
    }
    this.onmessage?.(this.options.parse === false ? data : message);
  }

  _onConnectionState() {
    const state = this.pc?.connectionState;
    if (state === "failed" || state === "closed") {
      this._finish(this._closeInfo || { code: 1006, reason: `connection ${state}` });
    } else if (state === "disconnected") {
      // often transient (a network switch): give ICE a moment to recover
      clearTimeout(this._disconnectTimer);
      this._disconnectTimer = setTimeout(() => {
        if (this.pc?.connectionState === "disconnected") {
          this._finish({ code: 1006, reason: "connection lost" });
        }
      }, DISCONNECTED_GRACE_MS);
    } else if (state === "connected") {
      clearTimeout(this._disconnectTimer);
    }
  }

  _finish(info) {
    if (this._closed) return;
    this._closed = true;
    const wasOpen = this._wasOpen;
    const rejectOpen = this._rejectOpen;
    this._rejectOpen = null;
    this._teardown();
    // not open yet: make a pending connect() fail instead of waiting for a channel that will never open
    rejectOpen?.(Object.assign(new Error(`WebRTC connection failed: ${info.reason}`), { code: info.code }));
    if (wasOpen) {
      this.onclose?.({ code: info.code, reason: info.reason, wasOpen, willRetry: false, delayMs: 0 });
    }
  }

  _teardown() {
    clearTimeout(this._disconnectTimer);
    this._disconnectTimer = null;
    const channel = this.channel;
    const pc = this.pc;
    this.channel = null;
    this.pc = null;
    this._sender = null;
    if (channel) {
      channel.onopen = channel.onclose = channel.onmessage = null;
      try {
        channel.close();
      } catch {
        /* already closed */
      }
    }
    if (pc) {
      pc.ontrack = pc.onconnectionstatechange = null;
      try {
        pc.close(); // stops our senders; the caller's microphone track is left running (it owns it)
      } catch {
        /* already closed */
      }
    }
    if (this.audioElement) this.audioElement.srcObject = null;
    this.remoteStream = null;
  }
}
