/**
 * Web Audio plumbing for one call: an AudioContext, the microphone through the capture worklet, and agent
 * audio through the playback worklet. Browser-only; the signal processing itself is in the worklets'
 * pure modules. VoiceClient talks to this class only, so tests can swap in a fake.
 *
 * Worklet URLs are resolved against this module's URL, so the files work wherever the directory is
 * served (`/`, `/client/`, another origin).
 *
 * @module audio-engine
 */

const CAPTURE_URL = new URL("../capture-worklet.js", import.meta.url).href;
const PLAYBACK_URL = new URL("../playback-worklet.js", import.meta.url).href;

/** How long to wait for the playback worklet to confirm a flush before acking from the last known position. */
const FLUSH_TIMEOUT_MS = 250;

/** Whether the browser can route an AudioContext to a chosen output device. */
export function supportsSinkId() {
  return typeof AudioContext !== "undefined" && typeof AudioContext.prototype.setSinkId === "function";
}

/**
 * A message a person can act on, for a getUserMedia failure.
 * @param {unknown} err
 */
export function micErrorMessage(err) {
  const name = /** @type {any} */ (err)?.name;
  if (name === "NotAllowedError" || name === "SecurityError" || name === "PermissionDeniedError") {
    return "Microphone access was denied. Allow the microphone for this site in the browser, then try again.";
  }
  if (name === "NotFoundError" || name === "DevicesNotFoundError" || name === "OverconstrainedError") {
    return "No microphone was found. Connect one and try again.";
  }
  if (name === "NotReadableError" || name === "TrackStartError") {
    return "The microphone is in use by another application or could not be opened.";
  }
  if (name === "InsecureContext") {
    return "Microphone access needs a secure page: open this page over https (or on localhost).";
  }
  const detail = /** @type {any} */ (err)?.message;
  return `Could not start the microphone${detail ? `: ${detail}` : "."}`;
}

/**
 * @typedef {object} AudioEngineOptions
 * @property {number} [captureRate=16000] rate of the frames sent to the server
 * @property {number} [frameMs=40]
 * @property {number} [prerollMs=80]
 * @property {number} [ackIntervalMs=200]
 * @property {number} [pauseTimeoutMs=3000] a playback pause nobody ends resumes by itself after this long
 * @property {boolean} [playback=true] set up agent-audio playback
 * @property {string} [inputDeviceId] microphone to use
 * @property {string} [sinkId] output device to use (where supported)
 * @property {(pcm: ArrayBuffer, rms: number) => void} [onFrame] a captured frame
 * @property {(event: {type: string, played?: number, received?: number, reason?: string, playing?: boolean}) => void}
 *   [onPlayback] playback reports (acks, playing state) for the current stream only
 * @property {(message: string) => void} [onError] trouble after start (e.g. the microphone was unplugged)
 */

export class AudioEngine {
  /** @param {AudioEngineOptions} [options] */
  constructor(options = {}) {
    this.options = {
      captureRate: 16000,
      frameMs: 40,
      prerollMs: 80,
      ackIntervalMs: 200,
      pauseTimeoutMs: 3000,
      playback: true,
      ...options,
    };
    /** @type {AudioContext | null} */
    this.ctx = null;
    this.playing = false;
    /** Playback is paused (the audio thread holds the queue). */
    this.paused = false;
    /** Last heard position reported for the current stream. */
    this.played = 0;
    this._stream = 0;
    this._rate = 16000;
    this._pending = []; // [message, transfer] posted to the playback worklet once it exists
    this._flushes = new Map();
    this._flushId = 0;
    this._closed = false;
  }

  /**
   * Create (or resume) the AudioContext. Call synchronously from the click handler: browsers only let
   * audio start from a user gesture.
   */
  prepare() {
    if (!this.ctx) {
      this.ctx = new AudioContext({ latencyHint: "interactive" });
      if (this.options.sinkId && supportsSinkId()) this.ctx.setSinkId(this.options.sinkId).catch(() => {});
    }
    if (this.ctx.state === "suspended") this.ctx.resume().catch(() => {});
    return this.ctx;
  }

  /**
   * Open the microphone (if `capture`) and build the audio graph. Rejects with the getUserMedia error.
   * @param {{capture?: boolean}} [options]
   */
  async start({ capture = true } = {}) {
    const ctx = this.prepare();
    const { playback } = this.options;
    const media = globalThis.navigator?.mediaDevices;
    if (capture && !media?.getUserMedia) {
      throw Object.assign(new Error("getUserMedia is unavailable"), { name: globalThis.isSecureContext === false ? "InsecureContext" : "NotSupportedError" });
    }
    const [stream] = await Promise.all([
      capture
        ? media.getUserMedia({
            audio: {
              echoCancellation: true,
              noiseSuppression: true,
              autoGainControl: true,
              channelCount: 1,
              ...(this.options.inputDeviceId ? { deviceId: { exact: this.options.inputDeviceId } } : {}),
            },
          })
        : null,
      capture ? ctx.audioWorklet.addModule(CAPTURE_URL) : null,
      playback ? ctx.audioWorklet.addModule(PLAYBACK_URL) : null,
    ]);
    if (this._closed) {
      stream?.getTracks().forEach((t) => t.stop());
      return;
    }
    if (playback) this._startPlayback(ctx);
    if (stream) this._startCapture(ctx, stream);
  }

  _startPlayback(ctx) {
    const node = new AudioWorkletNode(ctx, "voice-playback", {
      numberOfInputs: 0,
      numberOfOutputs: 1,
      outputChannelCount: [1],
      processorOptions: {
        inputRate: this._rate,
        prerollMs: this.options.prerollMs,
        ackIntervalMs: this.options.ackIntervalMs,
        maxPauseMs: this.options.pauseTimeoutMs,
      },
    });
    node.port.onmessage = (event) => this._onPlaybackMessage(event.data);
    node.connect(ctx.destination);
    this.playbackNode = node;
    for (const [msg, transfer] of this._pending) node.port.postMessage(msg, transfer);
    this._pending = [];
  }

  _startCapture(ctx, stream) {
    this.mediaStream = stream;
    this.source = ctx.createMediaStreamSource(stream);
    const node = new AudioWorkletNode(ctx, "voice-capture", {
      numberOfInputs: 1,
      numberOfOutputs: 1,
      outputChannelCount: [1],
      channelCount: 1,
      channelCountMode: "explicit", // the browser downmixes to mono before the worklet sees it
      channelInterpretation: "speakers",
      processorOptions: { targetRate: this.options.captureRate, frameMs: this.options.frameMs },
    });
    node.port.onmessage = (event) => {
      const msg = event.data;
      if (msg?.type === "frame") this.options.onFrame?.(msg.pcm, msg.rms);
    };
    this.source.connect(node);
    // A node nobody pulls may not be processed: connect it to the destination. It writes no output, so
    // this is silent.
    node.connect(ctx.destination);
    this.captureNode = node;
    for (const track of stream.getAudioTracks()) {
      track.addEventListener("ended", () => {
        if (!this._closed) this.options.onError?.("The microphone was disconnected.");
      });
    }
  }

  _post(msg, transfer = []) {
    if (this.playbackNode) this.playbackNode.port.postMessage(msg, transfer);
    else this._pending.push([msg, transfer]);
  }

  _onPlaybackMessage(msg) {
    if (!msg) return;
    if (msg.type === "flushed") {
      const resolve = this._flushes.get(msg.id);
      this._flushes.delete(msg.id);
      resolve?.(msg.played);
      return;
    }
    if (msg.stream !== this._stream) return; // a report about audio from before the last configure
    if (msg.type === "ack") this.played = msg.played;
    if (msg.type === "playing") this.playing = msg.playing;
    if (msg.type === "paused") this.paused = msg.paused;
    this.options.onPlayback?.(msg);
  }

  /**
   * Start a new agent-audio stream at `sampleRate` (on `audio_config`, or to discard a dead connection's
   * audio): queued audio is dropped and positions restart at 0.
   * @param {number} sampleRate
   */
  configurePlayback(sampleRate) {
    this._rate = sampleRate;
    this._stream += 1;
    this.played = 0;
    this.playing = false;
    this.paused = false;
    this._post({ type: "config", sampleRate, stream: this._stream });
  }

  /**
   * Queue agent audio. Takes ownership of the buffer (it is transferred to the audio thread).
   * @param {ArrayBuffer} pcm int16 LE mono at the configured rate
   */
  enqueue(pcm) {
    this._post({ type: "audio", pcm }, [pcm]);
  }

  /**
   * Count agent audio that arrived but must not be played (stale after a barge-in), keeping positions in
   * step with the server's.
   * @param {number} samples
   */
  discard(samples) {
    this._post({ type: "discard", samples });
  }

  /**
   * Stop agent audio now. Resolves with the heard position once the audio thread has flushed (its ack has
   * already been delivered to `onPlayback` by then).
   * @returns {Promise<number>}
   */
  flush() {
    if (!this.playbackNode) {
      this._pending = this._pending.filter(([msg]) => msg.type !== "audio");
      this.options.onPlayback?.({ type: "ack", played: this.played, reason: "flush" });
      return Promise.resolve(this.played);
    }
    const id = ++this._flushId;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        if (!this._flushes.has(id)) return;
        this._flushes.delete(id);
        // The audio thread didn't answer (context suspended/closed): report the last known position.
        this.options.onPlayback?.({ type: "ack", played: this.played, reason: "flush" });
        resolve(this.played);
      }, FLUSH_TIMEOUT_MS);
      this._flushes.set(id, (played) => {
        clearTimeout(timer);
        resolve(played);
      });
      this.playbackNode.port.postMessage({ type: "flush", id });
    });
  }

  /**
   * Hold agent audio now, keeping what is queued; the heard position stops (an ack, reason "pause", reports it).
   * Audio enqueued meanwhile is kept for later.
   */
  pause() {
    this._post({ type: "pause" });
  }

  /** Continue agent audio from the sample where {@link AudioEngine#pause} stopped it. */
  resume() {
    this._post({ type: "resume" });
  }

  /** Tell the capture worklet to drop partial frames (e.g. on unmute). */
  resetCapture() {
    this.captureNode?.port.postMessage({ type: "reset" });
  }

  /**
   * Route agent audio to an output device.
   * @param {string} sinkId a `MediaDeviceInfo.deviceId` of kind "audiooutput" ("" = default)
   */
  async setSinkId(sinkId) {
    this.options.sinkId = sinkId;
    if (!supportsSinkId()) throw new Error("Choosing an output device is not supported in this browser.");
    if (this.ctx) await this.ctx.setSinkId(sinkId);
  }

  /** Stop the microphone (the browser's recording indicator goes off); playback keeps going. */
  stopCapture() {
    this.source?.disconnect();
    this.captureNode?.disconnect();
    if (this.captureNode) this.captureNode.port.onmessage = null;
    this.mediaStream?.getTracks().forEach((t) => t.stop());
    this.source = this.captureNode = this.mediaStream = null;
  }

  /** Tear everything down. */
  async close() {
    this._closed = true;
    this.stopCapture();
    this.playbackNode?.disconnect();
    this.playbackNode = null;
    for (const resolve of this._flushes.values()) resolve(this.played);
    this._flushes.clear();
    this.playing = false;
    const ctx = this.ctx;
    this.ctx = null;
    if (ctx && ctx.state !== "closed") await ctx.close().catch(() => {});
  }

  /** Numbers for diagnostics and browser tests. */
  get stats() {
    return {
      contextState: this.ctx?.state ?? "closed",
      contextRate: this.ctx?.sampleRate ?? null,
      baseLatency: this.ctx?.baseLatency ?? null,
      outputLatency: this.ctx?.outputLatency ?? null,
      capturing: !!this.mediaStream,
      playing: this.playing,
      paused: this.paused,
      played: this.played,
    };
  }
}
