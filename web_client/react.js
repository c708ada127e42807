/**
 * React hooks over {@link VoiceClient}. React is a peer: this module imports the bare specifier "react",
 * so use it through a bundler (React 19's npm packages are CommonJS) or an import map to an ESM build of React.
 * Bundled, the AudioWorklets are still loaded from `new URL("../capture-worklet.js", import.meta.url)` (esbuild
 * keeps that as is): `capture-worklet.js`, `playback-worklet.js` and `lib/` must be served from the parent of the
 * bundle's directory, e.g. the bundle at `/bundle/app.js` and this directory at `/` (as `voice serve` does).
 * Nothing else in this directory imports it, so the plain-HTML widgets never need React.
 *
 * ```jsx
 * import { useVoiceAgent } from "/client/react.js";
 * function Chat() {
 *   const { status, transcript, startCall, endCall, inCall } = useVoiceAgent({ agent: "assistant", instance: "demo" });
 *   return <button onClick={inCall ? endCall : startCall}>{inCall ? "End" : "Call"} ({status})</button>;
 * }
 * ```
 *
 * @module react
 */

import { useEffect, useState, useRef, useCallback } from "react";
import { VoiceClient } from "./voice-client.js";

/**
 * VoiceClient options from hook options: `name` (what Cloudflare's hooks call the instance) is accepted for
 * `instance`, and `enabled` is the hook's own.
 */
function clientOptions({ enabled: _enabled, name, ...options }) {
  return { ...options, instance: options.instance ?? name };
}

/** Options that identify the connection; changing any of them makes a new client. */
function connectionKey(o) {
  const transport = typeof o.transport === "string" ? o.transport : "";
  return JSON.stringify([o.agent, o.instance ?? o.name, o.host, o.url, o.query, transport]);
}

/** Snapshot of everything a component renders from. */
function snapshot(client) {
  return {
    connection: client ? client.connection : "closed",
    connected: client ? client.connected : false,
    status: client ? client.status : "idle",
    transcript: client ? client.transcript : [],
    interimTranscript: client ? client.interimTranscript : null,
    metrics: client ? client.metrics : null,
    audioLevel: client ? client.audioLevel : 0,
    isMuted: client ? client.muted : false,
    inCall: client ? client.inCall : false,
    error: client ? client.error : null,
    lastCustomMessage: client ? client.lastCustomMessage : null,
  };
}

const EVENTS = [
  "connectionchange",
  "statuschange",
  "transcriptchange",
  "interimtranscript",
  "metricschange",
  "audiolevelchange",
  "mutechange",
  "callchange",
  "error",
  "custommessage",
];

/**
 * Create, connect and mirror a VoiceClient for the component's lifetime.
 * @param {import("./voice-client.js").VoiceClientOptions & {enabled?: boolean}} options
 */
function useClient(options) {
  const { enabled = true } = options;
  const key = connectionKey(options);
  const optionsRef = useRef(options);
  optionsRef.current = options;
  const clientRef = useRef(null);
  const [state, setState] = useState(() => snapshot(null));

  useEffect(() => {
    if (!enabled) {
      setState(snapshot(null));
      return undefined;
    }
    const client = new VoiceClient(clientOptions(optionsRef.current));
    clientRef.current = client;
    const sync = () => setState(snapshot(client));
    for (const type of EVENTS) client.addEventListener(type, sync);
    client.connect();
    sync();
    return () => {
      for (const type of EVENTS) client.removeEventListener(type, sync);
      if (clientRef.current === client) clientRef.current = null;
      client.disconnect();
    };
  }, [key, enabled]);

  return { clientRef, state };
}

/**
 * Full voice conversation: state plus actions. Same names as Cloudflare's `useVoiceAgent` (including `name` for the
 * instance, `sendJSON` and `lastCustomMessage`), plus `connection`, `inCall` and `client`.
 * @param {import("./voice-client.js").VoiceClientOptions & {enabled?: boolean, name?: string}} options
 * @returns {{connection: string, connected: boolean, status: string, transcript: readonly object[],
 *   interimTranscript: string | null, metrics: object | null, audioLevel: number, isMuted: boolean,
 *   inCall: boolean, error: string | null, lastCustomMessage: object | null, startCall: () => Promise<void>,
 *   endCall: () => Promise<void>, toggleMute: () => void, sendText: (text: string) => boolean,
 *   sendJSON: (message: object) => boolean, setOutputDevice: (id: string) => Promise<boolean>,
 *   client: VoiceClient | null}}
 */
export function useVoiceAgent(options) {
  const { clientRef, state } = useClient(options);
  const startCall = useCallback(() => clientRef.current?.startCall() ?? Promise.resolve(), [clientRef]);
  const endCall = useCallback(() => clientRef.current?.endCall() ?? Promise.resolve(), [clientRef]);
  const toggleMute = useCallback(() => clientRef.current?.toggleMute(), [clientRef]);
  const sendText = useCallback((text) => clientRef.current?.sendText(text) ?? false, [clientRef]);
  const sendJSON = useCallback((message) => clientRef.current?.sendJSON(message) ?? false, [clientRef]);
  const setOutputDevice = useCallback((id) => clientRef.current?.setOutputDevice(id) ?? Promise.resolve(false), [clientRef]);
  return { ...state, startCall, endCall, toggleMute, sendText, sendJSON, setOutputDevice, client: clientRef.current };
}

/**
 * Dictation: the user's final transcripts joined into one string, plus the words in progress.
 * No agent audio is played.
 * @param {import("./voice-client.js").VoiceClientOptions & {enabled?: boolean, name?: string}} options
 * @returns {{transcript: string, interimTranscript: string | null, isListening: boolean, audioLevel: number,
 *   isMuted: boolean, error: string | null, connected: boolean, start: () => Promise<void>,
 *   stop: () => Promise<void>, toggleMute: () => void, clear: () => void, client: VoiceClient | null}}
 */
export function useVoiceInput(options) {
  const { clientRef, state } = useClient({ playback: false, loadHistory: false, bargeIn: false, ...options });
  const [text, setText] = useState("");

  const client = clientRef.current;
  useEffect(() => {
    if (!client) return undefined;
    const onTranscript = (event) => {
      const { message } = event.detail;
      const piece = message.role === "user" ? message.text.trim() : "";
      if (piece) setText((prev) => (prev ? `${prev} ${piece}` : piece));
    };
    client.addEventListener("transcript", onTranscript);
    return () => client.removeEventListener("transcript", onTranscript);
  }, [client]);

  const start = useCallback(() => clientRef.current?.startCall() ?? Promise.resolve(), [clientRef]);
  const stop = useCallback(() => clientRef.current?.endCall() ?? Promise.resolve(), [clientRef]);
  const toggleMute = useCallback(() => clientRef.current?.toggleMute(), [clientRef]);
  const clear = useCallback(() => setText(""), []);
  return {
    transcript: text,
    interimTranscript: state.interimTranscript,
    isListening: state.inCall,
    audioLevel: state.audioLevel,
    isMuted: state.isMuted,
    error: state.error,
    connected: state.connected,
    start,
    stop,
    toggleMute,
    clear,
    client,
  };
}
