/**
 * Bits shared by the custom elements: the theme variables, base styles (buttons, focus ring, error box,
 * screen-reader-only text) and a safe base class so the modules can be imported where there is no DOM.
 *
 * @module ui
 */

/** `HTMLElement` in browsers; a stub elsewhere so importing an element module never throws. */
export const ElementBase = globalThis.HTMLElement ?? class {};

/** Define a custom element once (modules may be loaded from two URLs, e.g. `/` and `/client/`). */
export function define(name, cls) {
  if (globalThis.customElements && !customElements.get(name)) customElements.define(name, cls);
}

/**
 * Internal `--_x` variables resolve the public `--voice-*` custom properties (documented in each element
 * and in README.md) with light/dark defaults, so the rest of the CSS only uses `var(--_x)`.
 */
export const BASE_CSS = `
:host {
  --_font: var(--voice-font, system-ui, -apple-system, "Segoe UI", Roboto, sans-serif);
  --_bg: var(--voice-bg, #ffffff);
  --_fg: var(--voice-fg, #1d1f23);
  --_muted: var(--voice-muted-fg, #5f6673);
  --_border: var(--voice-border, #d9dce1);
  --_radius: var(--voice-radius, 12px);
  --_gap: var(--voice-gap, 0.6rem);
  --_accent: var(--voice-accent, #2459d6);
  --_accent-fg: var(--voice-accent-fg, #ffffff);
  --_danger: var(--voice-danger, #c62828);
  --_danger-fg: var(--voice-danger-fg, #ffffff);
  --_focus: var(--voice-focus, #f5a623);
  --_user-bg: var(--voice-user-bg, #2459d6);
  --_user-fg: var(--voice-user-fg, #ffffff);
  --_agent-bg: var(--voice-agent-bg, #eef0f4);
  --_agent-fg: var(--voice-agent-fg, #1d1f23);
  --_idle: var(--voice-status-idle, #8a919e);
  --_listening: var(--voice-status-listening, #1f9d55);
  --_thinking: var(--voice-status-thinking, #d68b00);
  --_speaking: var(--voice-status-speaking, #2459d6);
  display: block;
  font-family: var(--_font);
  color: var(--_fg);
}
@media (prefers-color-scheme: dark) {
  :host {
    --_bg: var(--voice-bg, #1b1d21);
    --_fg: var(--voice-fg, #eceef2);
    --_muted: var(--voice-muted-fg, #a3a9b5);
    --_border: var(--voice-border, #3a3e46);
    --_agent-bg: var(--voice-agent-bg, #2a2d33);
    --_agent-fg: var(--voice-agent-fg, #eceef2);
    --_accent: var(--voice-accent, #5b8cff);
    --_user-bg: var(--voice-user-bg, #3b6be0);
  }
}
:host([hidden]) { display: none; }
* { box-sizing: border-box; }
.panel {
  background: var(--_bg);
  border: 1px solid var(--_border);
  border-radius: var(--_radius);
  padding: var(--_gap);
  display: flex;
  flex-direction: column;
  gap: var(--_gap);
}
button {
  font: inherit;
  border: 1px solid var(--_border);
  background: var(--_bg);
  color: var(--_fg);
  border-radius: calc(var(--_radius) / 1.5);
  padding: 0.45em 0.9em;
  cursor: pointer;
}
button.primary { background: var(--_accent); color: var(--_accent-fg); border-color: var(--_accent); }
button.danger { background: var(--_danger); color: var(--_danger-fg); border-color: var(--_danger); }
button[aria-pressed="true"] { background: var(--_fg); color: var(--_bg); }
button:disabled { opacity: 0.55; cursor: not-allowed; }
button:focus-visible, input:focus-visible, textarea:focus-visible {
  outline: 3px solid var(--_focus);
  outline-offset: 2px;
}
.error {
  display: flex;
  gap: var(--_gap);
  align-items: center;
  border: 1px solid var(--_danger);
  color: var(--_danger);
  border-radius: calc(var(--_radius) / 1.5);
  padding: 0.4em 0.7em;
}
.error[hidden] { display: none; }
.error .msg { flex: 1; }
.error button { padding: 0.2em 0.6em; }
.sr-only {
  position: absolute; width: 1px; height: 1px; padding: 0; margin: -1px;
  overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap; border: 0;
}
.status { display: inline-flex; align-items: center; gap: 0.4em; color: var(--_muted); }
.dot { width: 0.7em; height: 0.7em; border-radius: 50%; background: var(--_idle); flex: none; }
:host([status="listening"]) .dot { background: var(--_listening); }
:host([status="thinking"]) .dot { background: var(--_thinking); }
:host([status="speaking"]) .dot { background: var(--_speaking); }
:host(:not([connection="open"])) .dot { background: transparent; border: 2px solid var(--_idle); }
@media (prefers-reduced-motion: no-preference) {
  :host([status="listening"]) .dot, :host([status="thinking"]) .dot { animation: pulse 1.4s ease-in-out infinite; }
  @keyframes pulse { 50% { opacity: 0.45; } }
}
.level { height: 4px; background: var(--_border); border-radius: 2px; overflow: hidden; }
.level > span { display: block; height: 100%; background: var(--_listening); transform-origin: left; transform: scaleX(0); }
`;

/** Status words shown next to the dot. */
export const STATUS_LABELS = { idle: "Idle", listening: "Listening", thinking: "Thinking…", speaking: "Speaking" };

/** The status line for a client: connection state first, pipeline status once connected. */
export function statusText(client) {
  if (!client) return "Not configured";
  if (client.connection === "connecting") return "Connecting…";
  if (client.connection === "closed") return "Offline";
  return STATUS_LABELS[client.status] ?? client.status;
}

/** Speech RMS is small (0.02–0.3); a square-root curve makes the meter move visibly for normal speech. */
export function meterScale(level) {
  return Math.min(1, Math.sqrt(Math.max(0, level) * 4));
}

/** Set or remove a boolean attribute. */
export function toggleAttr(el, name, on) {
  if (on) el.setAttribute(name, "");
  else el.removeAttribute(name);
}
