/**
 * VoiceClient: the browser side of the voice protocol (compatible with Cloudflare's @cloudflare/voice v1,
 * plus the `playback_ack` extension), framework-agnostic. UI code reads its state and listens to its
 * events; see README.md for the full list.
 *
 * Transports: the WebSocket (default) carries everything. With `transport: "webrtc"` each call goes over
 * WebRTC (microphone and agent voice as media tracks, messages on a data channel) and the WebSocket stays the
 * control connection; WebRTC falls back to the WebSocket when it can't connect. `transportInUse` and the
 * `transportchange` event tell which one carries the call (lib/connection.js has the details).
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

import { VoiceConnection, PROTOCOL_VERSION } from "./lib/connection.js";
import { frameSamplesFor } from "./lib/pcm.js";
import { micErrorMessage, supportsSinkId } from "./lib/audio-engine.js";
import { CallAudio } from "./lib/call-audio.js";

export { PROTOCOL_VERSION };
const STATUSES = new Set(["idle", "listening", "thinking", "speaking"]);

/**
 * The state getters (`connection`, `status`, `transcript`, `interimTranscript`, `metrics`, `audioLevel`,
 * `muted`, `error`, `inCall`, ...) and the events come from {@link VoiceState}; the connection (`url`,
 * `transportInUse`, `sendText`, `refreshHistory`, ...) from {@link VoiceConnection}. Options: lib/options.js.
 */
export class VoiceClient extends VoiceConnection {
  #callGen = 0;
  /** The microphone is open, so `start_call` may be (re)sent. */
  #micReady = false;
  /** @type {CallAudio | null} audio path of the current call */
  #call = null;
  #outputDeviceId;
  #frameMs;
  #lastCustomMessage = null;

  /** @param {import("./lib/options.js").VoiceClientOptions} options */
  constructor(options) {
    super(options);
    const o = this._o;
    this.#outputDeviceId = o.outputDeviceId;
    // The capture worklet clamps the frame size to the protocol's 20–100 ms; time speech by the real size.
    this.#frameMs = (frameSamplesFor(o.sampleRate, o.frameMs) * 1000) / o.sampleRate;
  }

  /** Whether agent audio is coming out of the speaker right now (over WebRTC: the server says it speaks). */
  get playing() {
    return this._rtcLive ? this._status === "speaking" : (this.#call?.playing ?? false);
  }
  /**
   * The last server message of a type this client doesn't know (the app's own, from `call.send_json`), or null.
   * The `custommessage` event announces each one. Same name as in Cloudflare's client.
   */
  get lastCustomMessage() {
    return this.#lastCustomMessage;
  }
  /** Whether agent audio is paused by the server (`playback_pause`), waiting for a resume or an interrupt. */
  get paused() {
    return this.#call?.paused ?? false;
  }
  /** Counters for diagnostics and browser tests. */
  get stats() {
    return {
      agent: this._o.agent,
      instance: this._o.instance,
      url: this.url,
      connection: this._connection,
      status: this._status,
      inCall: this._inCall,
      ...this._connectionStats,
      ...this._stats,
      playing: this.playing,
      paused: this.paused,
      playedSamples: this.#call?.engine.played ?? this._stats.lastAck?.played ?? 0,
      audio: this.#call?.engine.stats ?? null,
    };
  }

  /** End any call and close the connection for good. */
  disconnect() {
    if (this._inCall) {
      // Say goodbye now: the connection is closed below, before an awaited #stopCall would get to it.
      this._send({ type: "end_call" });
      this.#stopCall({ notifyServer: false, flush: false });
    }
    super.disconnect();
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
    this.connect();
    const gen = ++this.#callGen;
    this.#micReady = false;
    this._serverAck = false;
    if (this._errorKind !== "connection") this._setError(null);
    this._setMetrics(null);
    this._setInCall(true);
    const call = this.#createCall();
    this.#call = call;
    if (this._muted) call.setMuted(true); // muted before the call: stay muted
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
    this._startOnServer();
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
    this._serverAck = false;
    const call = this.#call;
    this.#call = null;
    this._setLevel(0);
    this._setInterim(null);
    this._setStatus("idle");
    this._setInCall(false);
    if (this._rtcLive && notifyServer) {
      this._send({ type: "end_call" }); // over the data channel, before it closes; nothing to flush here
      notifyServer = false;
    }
    this._endRtc();
    // Flushing first sends the final playback_ack, so the stored reply matches what the user heard.
    await call?.stop({ flush: flush && this.connected });
    if (notifyServer) this._send({ type: "end_call" });
  }

  #createCall() {
    const o = this._o;
    return new CallAudio(
      {
        engine: {
          captureRate: o.sampleRate,
          frameMs: o.frameMs,
          prerollMs: o.prerollMs,
          pauseTimeoutMs: o.pauseTimeoutMs,
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
        stats: this._stats,
      },
      {
        // Over WebRTC the server knows what its track played: no playback_ack.
        sendJSON: (message) => !(message.type === "playback_ack" && this._rtcLive) && this._send(message),
        sendBinary: (pcm) => this._sendAudio(pcm),
        canStream: () => this._inCall && this.#micReady,
        onLevel: (level) => this._setLevel(level),
        onPlaying: (playing) => this._emit("playbackchange", { playing }),
        onPaused: (paused, reason) => this._emit("playbackpause", { paused, reason }),
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
    this._rtc?.setMuted(muted); // WebRTC: the track is disabled (it sends silence)
    if (muted) this._setLevel(0);
    this._setMuted(muted);
  }

  /** @returns {boolean} the new muted state */
  toggleMute() {
    this.setMuted(!this._muted);
    return this._muted;
  }

  /**
   * Play agent audio on another output device. Needs `AudioContext.prototype.setSinkId` (Chromium); over
   * WebRTC, `HTMLMediaElement.prototype.setSinkId`.
   * @param {string} deviceId from `navigator.mediaDevices.enumerateDevices()` (kind "audiooutput")
   * @returns {Promise<boolean>} false if unsupported or the switch failed (`error` says why)
   */
  async setOutputDevice(deviceId) {
    this.#outputDeviceId = deviceId;
    const engineCan = supportsSinkId() || !!this._o.createAudioEngine;
    try {
      const rtcCan = (await this._rtc?.setSinkId(deviceId)) ?? false;
      if (!engineCan && !rtcCan) {
        this._setError("Choosing an output device is not supported in this browser.", "output");
        return false;
      }
      if (engineCan) await this.#call?.engine.setSinkId(deviceId);
      this._clearError("output");
      return true;
    } catch (err) {
      this._setError(`Could not switch the output device: ${err?.message ?? err}`, "output");
      return false;
    }
  }

  /** Whether {@link VoiceClient#setOutputDevice} can work in this browser (Web Audio output). */
  static get supportsOutputDevice() {
    return supportsSinkId();
  }

  // --- incoming -------------------------------------------------------------------------------------

  _onAudio(buffer) {
    this._stats.samplesReceived += buffer.byteLength >> 1;
    if (this._audioFormat && this._audioFormat.format !== "pcm16") return;
    this.#call?.onAudio(buffer);
  }

  _handleMessage(msg) {
    this.#call?.onServerMessage(msg);
    if (this._applyMessage(msg)) return; // transcripts, metrics, errors, welcome
    switch (msg.type) {
      case "status":
        this.#onStatus(msg.status);
        break;
      case "audio_config":
        this.#onAudioConfig(msg);
        break;
      case "playback_interrupt":
        if (this._store.markInterrupted()) this._emitTranscript();
        // Over WebRTC the server already dropped what its track had not sent; nothing is queued here.
        if (!this._rtcLive) this.#call?.flush();
        break;
      // The server heard the user start talking over the agent and is deciding: hold the audio, then resume it
      // (a backchannel or noise) or drop it (playback_interrupt). Over WebRTC the server holds its own track.
      case "playback_pause":
        if (!this._rtcLive) this.#call?.pause();
        break;
      case "playback_resume":
        if (!this._rtcLive) this.#call?.resume();
        break;
      default:
        // Unknown types are ignored by the protocol; surfaced for apps with their own messages.
        this.#lastCustomMessage = msg;
        this._emit("custommessage", { message: msg });
    }
  }

  #onAudioConfig(msg) {
    this._serverAck = true;
    const sampleRate = Number(msg.sampleRate ?? msg.sample_rate) || 16000;
    const transport = msg.transport ?? "websocket";
    this._audioFormat = { format: msg.format ?? "pcm16", sampleRate, transport };
    this._stats.samplesReceived = 0;
    // Over WebRTC the agent's voice comes on the media track, not as binary frames for our player.
    if (transport !== "webrtc") {
      this.#call?.newStream(sampleRate);
      if (this._audioFormat.format !== "pcm16") {
        this._setError(`The server sends "${this._audioFormat.format}" audio; this client plays pcm16 only.`, "server");
      }
    }
    this._emit("audioconfig", { ...this._audioFormat });
  }

  #onStatus(status) {
    if (!STATUSES.has(status)) return;
    if (status === "idle" && this._inCall) {
      // After the server acknowledged our call, idle means it ended the call (e.g. the agent hung up).
      // Before that, idle is just the greeting every connection gets.
      if (this._serverAck || this._errorKind === "server") {
        this.#stopCall({ notifyServer: false, flush: false });
        return;
      }
    } else if (status !== "idle" && this._inCall) {
      this._serverAck = true;
    }
    this._setStatus(status);
  }

  // --- hooks of VoiceConnection ---------------------------------------------------------------------

  _onConnectionLost() {
    // Audio from the dead connection can't be acknowledged any more; the new one starts a new stream.
    this.#call?.newStream(this._audioFormat?.sampleRate ?? this._o.sampleRate);
  }

  _callReady() {
    return this._inCall && this.#micReady;
  }

  _micStream() {
    return this.#call?.engine.mediaStream ?? null;
  }

  _endCallFromServer() {
    if (this._inCall) this.#stopCall({ notifyServer: false, flush: false });
  }
}
