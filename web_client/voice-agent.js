/**
 * `<voice-agent>`: a voice (and text) chat widget for one agent instance.
 *
 * ```html
 * <script type="module" src="/client/voice-agent.js"></script>
 * <voice-agent agent="assistant" instance="demo"></voice-agent>
 * ```
 *
 * Attributes (changing agent/instance/host/transport reconnects):
 * - `agent` — agent name (default "assistant"); `instance` — conversation id (default "default");
 * - `host` — `host[:port]` or `https://host` of the voice server (default: the page's host);
 * - `transport` — "websocket" (default) or "webrtc" (calls over WebRTC, falling back to the WebSocket);
 * - `show-metrics` — draw a latency waterfall under each reply that has metrics (lib/waterfall.js); no reconnect.
 * Reflected state (read-only, for styling and tests): `status` (idle|listening|thinking|speaking),
 * `connection` (connecting|open|closed), `in-call`, `muted`, `error` (present while an error shows),
 * `transport-in-use` (websocket|webrtc).
 *
 * Properties: `element.client` — the underlying {@link VoiceClient} (replaced when attributes change; a
 * `voice-client` event with `detail.client` announces each new one); `element.clientOptions` — extra
 * VoiceClient options (e.g. `{iceServers}`, `{offerFilter}`); setting it makes a new client.
 *
 * Theming — CSS custom properties, set on the element or any ancestor:
 *   --voice-font            font family
 *   --voice-bg / --voice-fg  panel background / text colour
 *   --voice-muted-fg        secondary text (status, latency, interim)
 *   --voice-border          borders
 *   --voice-radius          corner radius (default 12px)
 *   --voice-gap             spacing (default 0.6rem)
 *   --voice-accent / --voice-accent-fg      primary button
 *   --voice-danger / --voice-danger-fg      end-call button, errors
 *   --voice-focus           keyboard focus ring
 *   --voice-user-bg / --voice-user-fg       user bubbles
 *   --voice-agent-bg / --voice-agent-fg     agent bubbles
 *   --voice-status-idle / -listening / -thinking / -speaking   status dot colours
 *   --voice-transcript-height               max height of the transcript before it scrolls (default 22rem)
 * Parts for deeper styling: `panel`, `header`, `transcript`, `interim`, `composer`, `controls`, `error`, `waterfall`.
 *
 * @module voice-agent
 */

import { headlineLatency, describeStages } from "./lib/metrics.js";
import { BASE_CSS, define, statusText, meterScale, toggleAttr } from "./lib/ui.js";
import { VoiceElement } from "./lib/voice-element.js";
import { waterfallOf, renderWaterfall, WATERFALL_CSS } from "./lib/waterfall.js";

const CSS = `
${BASE_CSS}
header { display: flex; align-items: center; justify-content: space-between; gap: var(--_gap); font-size: 0.9em; }
.latency { color: var(--_muted); font-variant-numeric: tabular-nums; }
.latency small { opacity: 0.8; }
ol.log {
  list-style: none; margin: 0; padding: 0.2em;
  display: flex; flex-direction: column; gap: 0.45em;
  max-height: var(--voice-transcript-height, 22rem); min-height: 4rem; overflow-y: auto;
}
ol.log:empty::before { content: "No messages yet."; color: var(--_muted); font-size: 0.9em; }
li.msg { max-width: 85%; padding: 0.45em 0.75em; border-radius: var(--_radius); line-height: 1.4; white-space: pre-wrap; overflow-wrap: anywhere; }
li.user { align-self: flex-end; background: var(--_user-bg); color: var(--_user-fg); border-bottom-right-radius: 4px; }
li.assistant { align-self: flex-start; background: var(--_agent-bg); color: var(--_agent-fg); border-bottom-left-radius: 4px; }
li.pending .text::after { content: "▍"; opacity: 0.6; }
li.interrupted .text::after { content: " —"; opacity: 0.6; }
li.interrupted .flag { font-size: 0.75em; opacity: 0.75; display: block; }
.interim { margin: 0; min-height: 1.3em; color: var(--_muted); font-style: italic; text-align: right; }
form.composer { display: flex; gap: 0.4em; }
form.composer input {
  flex: 1; min-width: 0; font: inherit; padding: 0.45em 0.7em; color: var(--_fg); background: var(--_bg);
  border: 1px solid var(--_border); border-radius: calc(var(--_radius) / 1.5);
}
.controls { display: flex; gap: 0.4em; flex-wrap: wrap; align-items: center; }
.controls .level { flex: 1; min-width: 3rem; }
${WATERFALL_CSS}
`;

const HTML = `
<style>${CSS}</style>
<section class="panel" part="panel" aria-label="Voice assistant">
  <header part="header">
    <span class="status"><span class="dot" aria-hidden="true"></span><span class="status-text" role="status">Connecting…</span></span>
    <span class="latency" part="latency"></span>
  </header>
  <div class="error" part="error" role="alert" hidden><span class="msg"></span><button type="button" class="dismiss">Dismiss</button></div>
  <ol class="log" part="transcript" aria-live="polite" aria-relevant="additions text" aria-label="Conversation"></ol>
  <p class="interim" part="interim" aria-hidden="true"></p>
  <form class="composer" part="composer">
    <label class="sr-only" for="text">Message</label>
    <input id="text" name="text" type="text" autocomplete="off" placeholder="Type a message…" enterkeyhint="send">
    <button type="submit" class="send">Send</button>
  </form>
  <div class="controls" part="controls">
    <button type="button" class="call primary">Start call</button>
    <button type="button" class="mute" aria-pressed="false" hidden>Mute</button>
    <div class="level" aria-hidden="true" hidden><span></span></div>
  </div>
</section>
`;

const CLIENT_EVENTS = [
  "connectionchange",
  "statuschange",
  "transcriptchange",
  "interimtranscript",
  "metricschange",
  "audiolevelchange",
  "mutechange",
  "callchange",
  "error",
  "transportchange",
];

export class VoiceAgentElement extends VoiceElement {
  static observedAttributes = ["agent", "instance", "host", "transport", "show-metrics"];

  #els;
  #onClientEvent = (event) => this.render(event.type);
  /** Reply id → the metrics of its turn (a `metrics` message follows the reply it measures). */
  #turnMetrics = new Map();

  constructor() {
    super();
    const root = this.attachShadow({ mode: "open" });
    root.innerHTML = HTML;
    const $ = (sel) => root.querySelector(sel);
    this.#els = {
      statusText: $(".status-text"),
      latency: $(".latency"),
      error: $(".error"),
      errorMsg: $(".error .msg"),
      dismiss: $(".dismiss"),
      log: $("ol.log"),
      interim: $(".interim"),
      form: $("form.composer"),
      input: $("#text"),
      call: $(".call"),
      mute: $(".mute"),
      level: $(".level"),
      levelBar: $(".level > span"),
    };
    const els = this.#els;
    els.form.addEventListener("submit", (event) => {
      event.preventDefault();
      if (this.client?.sendText(els.input.value)) els.input.value = "";
    });
    // startCall must run inside the click handler (user activation) — no await before it.
    els.call.addEventListener("click", () => {
      const client = this.client;
      if (!client) return;
      if (client.inCall) client.endCall();
      else client.startCall();
    });
    els.mute.addEventListener("click", () => this.client?.toggleMute());
    els.dismiss.addEventListener("click", () => this.client?.clearError());
  }

  attributeChangedCallback(name, oldValue, newValue) {
    if (name === "show-metrics") {
      if (this.client) this.#renderTranscript(this.client.transcript);
      return;
    }
    super.attributeChangedCallback(name, oldValue, newValue);
  }

  clientDefaults() {
    return { agent: this.getAttribute("agent") || "assistant" };
  }

  clientListeners() {
    return CLIENT_EVENTS.map((type) => [type, this.#onClientEvent]);
  }

  showError(message) {
    this.#els.errorMsg.textContent = message ?? "";
    this.#els.error.hidden = !message;
    toggleAttr(this, "error", !!message);
  }

  /** Update only what an event can have changed. */
  render(what) {
    const c = this.client;
    if (!c) return;
    const all = what === "all";
    const els = this.#els;
    if (all) this.#turnMetrics.clear();
    if (what === "metricschange" && c.metrics) {
      const reply = c.transcript.findLast((m) => m.role === "assistant");
      if (reply) this.#turnMetrics.set(reply.id, c.metrics);
    }
    if (all || what === "connectionchange" || what === "statuschange" || what === "callchange" || what === "transportchange") {
      this.setAttribute("status", c.status);
      this.setAttribute("connection", c.connection);
      toggleAttr(this, "in-call", c.inCall);
      this.setAttribute("transport-in-use", c.transportInUse);
      els.statusText.textContent = statusText(c);
      els.call.textContent = c.inCall ? "End call" : "Start call";
      els.call.classList.toggle("primary", !c.inCall);
      els.call.classList.toggle("danger", c.inCall);
      els.mute.hidden = !c.inCall;
      els.level.hidden = !c.inCall;
    }
    if (all || what === "mutechange") {
      toggleAttr(this, "muted", c.muted);
      els.mute.setAttribute("aria-pressed", String(c.muted));
      els.mute.textContent = c.muted ? "Unmute" : "Mute";
    }
    if (all || what === "transcriptchange" || what === "metricschange") this.#renderTranscript(c.transcript);
    if (all || what === "interimtranscript") els.interim.textContent = c.interimTranscript ?? "";
    if (all || what === "metricschange") this.#renderLatency(c.metrics);
    if (all || what === "audiolevelchange") els.levelBar.style.transform = `scaleX(${meterScale(c.audioLevel)})`;
    if (all || what === "error") this.showError(c.error);
  }

  #renderLatency(metrics) {
    const el = this.#els.latency;
    const ms = headlineLatency(metrics);
    if (ms === null) {
      el.textContent = "";
      return;
    }
    const stages = describeStages(metrics);
    el.innerHTML = "";
    el.append(`Response ${Math.round(ms)} ms`);
    if (stages) {
      const small = document.createElement("small");
      small.textContent = ` (${stages})`;
      el.append(small);
    }
  }

  /** The waterfall under a reply: present with `show-metrics` when its turn has metrics, redrawn when they change. */
  #syncWaterfall(li, message) {
    const old = li.querySelector("figure.waterfall");
    const metrics = this.hasAttribute("show-metrics") ? this.#turnMetrics.get(message.id) : undefined;
    if (old?.metrics === metrics) return;
    old?.remove();
    const w = waterfallOf(metrics ?? null);
    if (!w) return;
    const figure = renderWaterfall(w);
    figure.setAttribute("part", "waterfall");
    figure.metrics = metrics;
    li.append(figure);
  }

  /** Keyed update: existing bubbles are patched, so streaming text doesn't rebuild the list. */
  #renderTranscript(list) {
    const log = this.#els.log;
    const nearBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 40;
    const existing = new Map();
    for (const li of log.children) existing.set(li.dataset.id, li);
    const keep = new Set(list.map((m) => m.id));
    for (const [id, li] of existing) if (!keep.has(id)) li.remove();
    let prev = null;
    let busy = false;
    for (const m of list) {
      let li = existing.get(m.id);
      if (!li) {
        li = document.createElement("li");
        li.dataset.id = m.id;
        li.innerHTML = '<span class="sr-only who"></span><span class="text"></span><span class="flag" hidden>interrupted</span>';
      }
      li.className = `msg ${m.role}${m.pending ? " pending" : ""}${m.interrupted ? " interrupted" : ""}`;
      li.querySelector(".who").textContent = m.role === "user" ? "You: " : "Agent: ";
      const text = li.querySelector(".text");
      if (text.textContent !== m.text) text.textContent = m.text;
      li.querySelector(".flag").hidden = !m.interrupted;
      this.#syncWaterfall(li, m);
      const want = prev ? prev.nextElementSibling : log.firstElementChild;
      if (want !== li) log.insertBefore(li, want);
      prev = li;
      busy ||= m.pending;
    }
    // While a reply streams in, mark the live region busy so screen readers read it once, when complete.
    log.setAttribute("aria-busy", String(busy));
    if (nearBottom) log.scrollTop = log.scrollHeight;
  }
}

define("voice-agent", VoiceAgentElement);
