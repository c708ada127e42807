/**
 * `VoiceClient` options: their documentation and defaults.
 *
 * @module options
 */

/**
 * @typedef {object} VoiceClientOptions
 * @property {string} agent agent name; kebab-cased into the URL (`MyAgent` → `my-agent`)
 * @property {string} [instance="default"] conversation instance
 * @property {string} [host] `host[:port]` or `https://host`; default: the page's host
 * @property {string} [url] full WebSocket URL, overriding agent/instance/host
 * @property {Record<string, string | number | boolean | null | undefined>} [query] extra URL parameters
 * @property {"websocket" | "webrtc" | object} [transport="websocket"] `"webrtc"`: calls go over WebRTC (audio
 *   on media tracks, messages on a data channel), falling back to the WebSocket when WebRTC can't connect;
 *   an object implementing the transport interface (lib/transport.js) is used as is
 * @property {(sdp: string) => string} [offerFilter] WebRTC: rewrite the offer SDP before it is sent
 * @property {RTCIceServer[]} [iceServers] WebRTC: STUN/TURN servers (default: the server's list)
 * @property {number} [webrtcTimeoutMs=10000] WebRTC: fall back to the WebSocket if not connected by then
 * @property {HTMLAudioElement} [audioElement] WebRTC: element that plays the agent's voice (default: a new one)
 * @property {typeof RTCPeerConnection} [RTCPeerConnection] WebRTC implementation (tests)
 * @property {(options: object) => object} [createWebRTCTransport] replace the WebRTCTransport (tests)
 * @property {number} [sampleRate=16000] rate of the microphone audio sent to the server
 * @property {number} [frameMs=40] microphone frame duration, 20–100 ms
 * @property {number} [prerollMs=80] agent audio buffered before playback starts
 * @property {boolean} [playback=true] play agent audio (false for dictation)
 * @property {number} [pauseTimeoutMs=3000] a server `playback_pause` not followed by `playback_resume` or
 *   `playback_interrupt` resumes by itself after this long
 * @property {boolean} [loadHistory=true] load the stored conversation on every (re)connect
 * @property {boolean} [bargeIn=true] interrupt the agent locally when the user talks over it
 * @property {number} [silenceThreshold=0.04] RMS for start/end-of-speech hints
 * @property {number} [silenceDurationMs=500] silence that ends an utterance (hint)
 * @property {number} [interruptThreshold=0.05] RMS that counts towards a local barge-in
 * @property {number} [interruptMs=160] sustained speech over agent audio that triggers a barge-in
 * @property {number} [maxTranscriptMessages=200]
 * @property {import("./backoff.js").BackoffOptions} [reconnect] reconnect backoff tuning
 * @property {string} [inputDeviceId] microphone device
 * @property {string} [outputDeviceId] speaker device (where `setSinkId` exists)
 * @property {typeof fetch} [fetch] for the history and WebRTC signaling requests (default: global fetch)
 * @property {(options: object) => import("./audio-engine.js").AudioEngine} [createAudioEngine] replace
 *   the Web Audio layer (tests)
 * @property {typeof WebSocket} [WebSocket] WebSocket implementation (tests)
 */

export const DEFAULTS = Object.freeze({
  instance: "default",
  transport: "websocket",
  sampleRate: 16000,
  frameMs: 40,
  prerollMs: 80,
  playback: true,
  pauseTimeoutMs: 3000,
  loadHistory: true,
  bargeIn: true,
});

/**
 * Options with defaults filled in.
 * @param {VoiceClientOptions} options
 * @returns {VoiceClientOptions}
 */
export function withDefaults(options) {
  return { ...DEFAULTS, ...options };
}
