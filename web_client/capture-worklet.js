/**
 * AudioWorklet processor "voice-capture": microphone → 16 kHz int16 frames for the server.
 *
 * Runs on the audio rendering thread. All the signal processing lives in `lib/capture.js` (unit-tested in
 * node); this file only adapts it to the AudioWorkletProcessor API.
 *
 * processorOptions: `{targetRate = 16000, frameMs = 40}`
 * Posts `{type: "frame", pcm: ArrayBuffer (int16 LE mono), rms: number}`, transferring the buffer.
 * Accepts `{type: "reset"}` (drop partial state, e.g. when unmuting).
 */

import { CapturePipeline } from "./lib/capture.js";
import { mixToMono } from "./lib/pcm.js";

class VoiceCaptureProcessor extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const opts = options?.processorOptions ?? {};
    // `sampleRate` is the AudioWorkletGlobalScope's rate, i.e. the AudioContext's.
    this.pipeline = new CapturePipeline({ inRate: sampleRate, outRate: opts.targetRate ?? 16000, frameMs: opts.frameMs ?? 40 });
    this.mono = new Float32Array(128);
    this.port.onmessage = (event) => {
      if (event.data?.type === "reset") this.pipeline.reset();
    };
  }

  process(inputs) {
    const channels = inputs[0];
    // No channels means no live source right now (track ended or not yet flowing): nothing to send.
    if (channels && channels.length > 0 && channels[0].length > 0) {
      const block = channels.length === 1 ? channels[0] : mixToMono(channels, this.mono);
      for (const frame of this.pipeline.process(block)) {
        this.port.postMessage({ type: "frame", pcm: frame.pcm.buffer, rms: frame.rms }, [frame.pcm.buffer]);
      }
    }
    return true; // keep running until the node is disconnected
  }
}

registerProcessor("voice-capture", VoiceCaptureProcessor);
