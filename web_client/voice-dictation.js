/**
 * `<voice-dictation>`: speech-to-text into an editable box.
 *
 * ```html
 * <script type="module" src="/client/voice-dictation.js"></script>
 * <voice-dictation agent="dictation" instance="notes"></voice-dictation>
 * ```
 *
 * Final user transcripts are appended to the text box (which stays editable); the in-progress words show
 * underneath. Buttons: Start/Stop dictation, Copy, Clear.
 *
 * Attributes: `agent` (default "dictation"), `instance` (default "default"), `host`, `transport`,
 * `placeholder`. Reflected: `status`, `connection`, `listening` (while dictating), `error`.
 * Properties: `client` (the VoiceClient), `value` (the text, read/write), `clientOptions` (extra VoiceClient
 * options, e.g. `{iceServers}`; setting them makes a new client).
 * Events: `input` (bubbles, composed) whenever dictated text is appended, with `detail.text` = the new
 * piece; `voice-client` when a client is created.
 *
 * Theming: the same `--voice-*` custom properties as `<voice-agent>` (see README.md), plus
 * `--voice-dictation-rows` (box height in lines, default 6). Parts: `panel`, `toolbar`, `text`,
 * `interim`, `error`.
 *
 * @module voice-dictation
 */

import { BASE_CSS, define, statusText, meterScale, toggleAttr } from "./lib/ui.js";
import { VoiceElement } from "./lib/voice-element.js";

const CSS = `
${BASE_CSS}
.toolbar { display: flex; gap: 0.4em; align-items: center; flex-wrap: wrap; }
.toolbar .status { margin-left: auto; font-size: 0.9em; }
textarea {
  width: 100%; resize: vertical; font: inherit; line-height: 1.45; color: var(--_fg); background: var(--_bg);
  border: 1px solid var(--_border); border-radius: calc(var(--_radius) / 1.5); padding: 0.5em 0.7em;
  min-height: calc(var(--voice-dictation-rows, 6) * 1.45em + 1em);
}
.interim { margin: 0; min-height: 1.3em; color: var(--_muted); font-style: italic; }
.copied { color: var(--_muted); font-size: 0.85em; }
`;

const HTML = `
<style>${CSS}</style>
<section class="panel" part="panel" aria-label="Dictation">
  <div class="toolbar" part="toolbar">
    <button type="button" class="toggle primary" aria-pressed="false">Start dictation</button>
    <button type="button" class="copy">Copy</button>
    <button type="button" class="clear">Clear</button>
    <span class="copied" role="status"></span>
    <span class="status"><span class="dot" aria-hidden="true"></span><span class="status-text">Connecting…</span></span>
  </div>
  <div class="level" aria-hidden="true" hidden><span></span></div>
  <div class="error" part="error" role="alert" hidden><span class="msg"></span><button type="button" class="dismiss">Dismiss</button></div>
  <label class="sr-only" for="box">Dictated text</label>
  <textarea id="box" part="text" spellcheck="true"></textarea>
  <p class="interim" part="interim" aria-live="polite"></p>
</section>
`;

const CLIENT_EVENTS = ["connectionchange", "statuschange", "interimtranscript", "callchange", "audiolevelchange", "error"];

export class VoiceDictationElement extends VoiceElement {
  static observedAttributes = ["agent", "instance", "host", "transport", "placeholder"];

  #els;
  #copiedTimer = null;
  #onClientEvent = (event) => this.render(event.type);
  #onTranscript = (event) => {
    const { message } = event.detail;
    if (message.role === "user" && message.text.trim()) this.#append(message.text.trim());
  };

  constructor() {
    super();
    const root = this.attachShadow({ mode: "open" });
    root.innerHTML = HTML;
    const $ = (sel) => root.querySelector(sel);
    this.#els = {
      toggle: $(".toggle"),
      copy: $(".copy"),
      clear: $(".clear"),
      copied: $(".copied"),
      statusText: $(".status-text"),
      level: $(".level"),
      levelBar: $(".level > span"),
      error: $(".error"),
      errorMsg: $(".error .msg"),
      dismiss: $(".dismiss"),
      box: $("textarea"),
      interim: $(".interim"),
    };
    const els = this.#els;
    els.toggle.addEventListener("click", () => {
      const c = this.client;
      if (!c) return;
      if (c.inCall) c.endCall();
      else c.startCall(); // synchronously in the click: audio needs the user gesture
    });
    els.copy.addEventListener("click", () => this.#copy());
    els.clear.addEventListener("click", () => {
      els.box.value = "";
      els.box.focus();
    });
    els.dismiss.addEventListener("click", () => this.client?.clearError());
  }

  /** The dictated (and possibly edited) text. */
  get value() {
    return this.#els.box.value;
  }
  set value(text) {
    this.#els.box.value = String(text ?? "");
  }

  connectedCallback() {
    this.#els.box.placeholder = this.getAttribute("placeholder") ?? "Press “Start dictation” and speak…";
    super.connectedCallback();
  }

  attributeChangedCallback(name, oldValue, newValue) {
    if (name === "placeholder") this.#els.box.placeholder = newValue ?? "";
    else super.attributeChangedCallback(name, oldValue, newValue);
  }

  clientDefaults() {
    return {
      agent: this.getAttribute("agent") || "dictation",
      playback: false, // dictation only listens
      loadHistory: false, // the box holds this session's text, not the server's history
      bargeIn: false,
    };
  }

  clientListeners() {
    return [...CLIENT_EVENTS.map((type) => [type, this.#onClientEvent]), ["transcript", this.#onTranscript]];
  }

  #append(text) {
    const box = this.#els.box;
    const sep = box.value && !/\s$/.test(box.value) ? " " : "";
    box.value += sep + text;
    box.scrollTop = box.scrollHeight;
    this.dispatchEvent(new CustomEvent("input", { bubbles: true, composed: true, detail: { text } }));
  }

  async #copy() {
    const els = this.#els;
    try {
      await navigator.clipboard.writeText(els.box.value);
      els.copied.textContent = "Copied";
    } catch {
      // Clipboard API unavailable (insecure page) or refused: select the text so Ctrl+C works.
      els.box.select();
      els.copied.textContent = "Press Ctrl+C to copy";
    }
    clearTimeout(this.#copiedTimer);
    this.#copiedTimer = setTimeout(() => (els.copied.textContent = ""), 2000);
  }

  showError(message) {
    this.#els.errorMsg.textContent = message ?? "";
    this.#els.error.hidden = !message;
    toggleAttr(this, "error", !!message);
  }

  render(what) {
    const c = this.client;
    if (!c) return;
    const els = this.#els;
    const all = what === "all";
    if (all || what === "connectionchange" || what === "statuschange" || what === "callchange") {
      this.setAttribute("status", c.status);
      this.setAttribute("connection", c.connection);
      toggleAttr(this, "listening", c.inCall);
      els.statusText.textContent = statusText(c);
      els.toggle.textContent = c.inCall ? "Stop dictation" : "Start dictation";
      els.toggle.setAttribute("aria-pressed", String(c.inCall));
      els.level.hidden = !c.inCall;
    }
    if (all || what === "interimtranscript") els.interim.textContent = c.interimTranscript ?? "";
    if (all || what === "audiolevelchange") els.levelBar.style.transform = `scaleX(${meterScale(c.audioLevel)})`;
    if (all || what === "error") this.showError(c.error);
  }
}

define("voice-dictation", VoiceDictationElement);
