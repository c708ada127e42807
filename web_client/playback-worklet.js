/**
 * AudioWorklet processor "voice-playback": agent audio from the server → speaker, gapless, with pre-roll,
 * instant flush and played-sample counting. The logic lives in `lib/player.js` (unit-tested in node).
 *
 * processorOptions: `{inputRate = 16000, prerollMs = 80, ackIntervalMs = 200, maxPauseMs = 3000}`
 *
 * Messages in:
 * - `{type: "config", sampleRate, stream}` — a new stream (after `audio_config`); positions restart at 0.
 *   `stream` is echoed on every message out so the main thread can drop reports about an old stream.
 * - `{type: "audio", pcm: ArrayBuffer}` — int16 LE mono at the configured rate, in order.
 * - `{type: "flush", id}` — drop everything queued now; answered by an `ack` (reason "flush") then
 *   `{type: "flushed", id, played}`.
 * - `{type: "discard", samples}` — that many samples arrived but are stale (in flight when the user barged
 *   in): count them in the stream position without playing them.
 * - `{type: "pause"}` — hold playback, keeping the queue (answered by an `ack`, reason "pause");
 *   `{type: "resume"}` — continue from the next unplayed sample. A pause resumes by itself after `maxPauseMs`.
 *
 * Messages out: `{type: "ack", played, received, reason, stream}`, `{type: "playing", playing, stream}`,
 * `{type: "paused", paused, reason, stream}`, `{type: "flushed", id, played, stream}`.
 */

import { Player } from "./lib/player.js";
import { bytesToInt16 } from "./lib/pcm.js";

class VoicePlaybackProcessor extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const opts = options?.processorOptions ?? {};
    this.stream = 0;
    this.player = new Player({
      outRate: sampleRate,
      inRate: opts.inputRate ?? 16000,
      prerollMs: opts.prerollMs ?? 80,
      ackIntervalMs: opts.ackIntervalMs ?? 200,
      maxPauseMs: opts.maxPauseMs ?? 3000,
      onEvent: (event) => this.port.postMessage({ ...event, stream: this.stream }),
    });
    this.port.onmessage = (event) => this.onMessage(event.data);
  }

  onMessage(msg) {
    switch (msg?.type) {
      case "config":
        this.stream = msg.stream ?? this.stream + 1;
        this.player.configure(msg.sampleRate);
        break;
      case "audio":
        this.player.push(bytesToInt16(msg.pcm));
        break;
      case "discard":
        this.player.discard(msg.samples);
        break;
      case "pause":
        this.player.pause();
        break;
      case "resume":
        this.player.resume();
        break;
      case "flush": {
        const played = this.player.flush();
        this.port.postMessage({ type: "flushed", id: msg.id, played, stream: this.stream });
        break;
      }
      default:
        break;
    }
  }

  process(_inputs, outputs) {
    const output = outputs[0];
    if (output && output.length > 0) {
      this.player.render(output[0]);
      for (let c = 1; c < output.length; c++) output[c].set(output[0]);
    }
    return true;
  }
}

registerProcessor("voice-playback", VoicePlaybackProcessor);
