/**
 * What `<voice-agent>` and `<voice-dictation>` share: a VoiceClient built from the element's attributes, rebuilt when
 * they (or `clientOptions`) change, and torn down when the element leaves the document.
 *
 * A subclass provides `clientDefaults()` (options such as the default agent), `clientListeners()` (`[type, fn]`
 * pairs attached to each new client), `render(what)` ("all" or an event type) and `showError(message)`.
 */
import { VoiceClient } from "../voice-client.js";
import { ElementBase } from "./ui.js";

export class VoiceElement extends ElementBase {
  #client = null;
  #clientOptions = {};
  #listeners = [];

  /** The underlying VoiceClient (null until the element is in the document). */
  get client() {
    return this.#client;
  }

  /** Extra VoiceClient options (beyond the attributes); setting them makes a new client. */
  get clientOptions() {
    return this.#clientOptions;
  }
  set clientOptions(options) {
    this.#clientOptions = { ...options };
    this.restartClient();
  }

  connectedCallback() {
    if (!this.#client) this.#setup();
  }

  disconnectedCallback() {
    this.#teardown();
  }

  attributeChangedCallback(_name, oldValue, newValue) {
    if (oldValue !== newValue && this.#client) this.restartClient();
  }

  restartClient() {
    this.#teardown();
    if (this.isConnected) this.#setup();
  }

  #setup() {
    try {
      this.#client = new VoiceClient({
        instance: this.getAttribute("instance") || "default",
        host: this.getAttribute("host") || undefined,
        transport: this.getAttribute("transport") || "websocket",
        ...this.clientDefaults(),
        ...this.#clientOptions,
      });
    } catch (err) {
      this.showError(`<${this.localName}> is misconfigured: ${err?.message ?? err}`);
      return;
    }
    this.#listeners = this.clientListeners();
    for (const [type, fn] of this.#listeners) this.#client.addEventListener(type, fn);
    this.dispatchEvent(new CustomEvent("voice-client", { detail: { client: this.#client } }));
    try {
      this.#client.connect();
    } catch (err) {
      this.showError(err?.message ?? String(err));
    }
    this.render("all");
  }

  #teardown() {
    const client = this.#client;
    if (!client) return;
    for (const [type, fn] of this.#listeners) client.removeEventListener(type, fn);
    client.disconnect();
    this.#client = null;
  }
}
