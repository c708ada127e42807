/**
 * Endpoint URLs for an agent instance: the WebSocket (`/agents/{agent}/{instance}`) and the history
 * endpoint next to it (`.../messages`).
 *
 * @module url
 */

import { kebab } from "./kebab.js";

/**
 * @typedef {object} EndpointOptions
 * @property {string} agent agent name, converted with {@link kebab}
 * @property {string} [instance="default"]
 * @property {string} [host] `host[:port]`, or a URL with a scheme (`https://example.com`); default: the
 *   page's host
 * @property {string} [url] full WebSocket URL; overrides agent/instance/host
 * @property {Record<string, string | number | boolean | null | undefined>} [query] appended to both URLs
 * @property {{protocol: string, host: string}} [location] the page location (default: `globalThis.location`)
 */

const SCHEMES = { "http:": "ws:", "https:": "wss:", "ws:": "ws:", "wss:": "wss:" };

function withQuery(url, query) {
  if (query) {
    for (const [key, value] of Object.entries(query)) {
      if (value !== null && value !== undefined) url.searchParams.set(key, String(value));
    }
  }
  return url;
}

/**
 * The WebSocket URL (`ws:` or `wss:`).
 * @param {EndpointOptions} options
 * @returns {string}
 */
export function socketUrl({ agent, instance = "default", host, url, query, location = globalThis.location }) {
  if (url) {
    const u = new URL(url, location ? `${location.protocol}//${location.host}` : undefined);
    u.protocol = SCHEMES[u.protocol] || u.protocol;
    return withQuery(u, query).toString();
  }
  if (!agent) throw new TypeError("VoiceClient: `agent` is required");
  let base;
  if (host && /^[a-z][a-z0-9+.-]*:\/\//i.test(host)) {
    const h = new URL(host);
    base = `${SCHEMES[h.protocol] || "ws:"}//${h.host}`;
  } else {
    const pageHost = host || location?.host;
    if (!pageHost) throw new TypeError("VoiceClient: no `host` given and no page location to default to");
    const secure = location?.protocol === "https:";
    base = `${secure ? "wss:" : "ws:"}//${pageHost}`;
  }
  const path = `/agents/${encodeURIComponent(kebab(agent))}/${encodeURIComponent(String(instance))}`;
  return withQuery(new URL(path, base), query).toString();
}

/**
 * The HTTP(S) URL of the history endpoint for a WebSocket URL.
 * @param {string} wsUrl from {@link socketUrl}
 * @returns {string}
 */
export function messagesUrl(wsUrl) {
  const u = new URL(wsUrl);
  u.protocol = u.protocol === "wss:" ? "https:" : "http:";
  u.pathname = `${u.pathname.replace(/\/+$/, "")}/messages`;
  return u.toString();
}

/**
 * Short `host[:port]` for messages shown to people.
 * @param {string} wsUrl
 */
export function displayHost(wsUrl) {
  try {
    return new URL(wsUrl).host;
  } catch {
    return wsUrl;
  }
}
