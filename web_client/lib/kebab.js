/**
 * Agent class names → URL path segments.
 *
 * Mirrors the conversion in Cloudflare's agents SDK (`camelCaseToKebabCase`) on purpose: the server
 * routes `/agents/{name}/...` by the same rule, so a client and server that disagree on e.g. "HTTPAgent"
 * would silently talk past each other. Being compatible beats being pretty here.
 *
 * @module kebab
 */

/**
 * Convert an agent name to the kebab-case used in URLs.
 *
 * - `MyVoiceAgent` → `my-voice-agent`
 * - `my_agent` → `my-agent`
 * - `ASSISTANT` → `assistant` (all-caps names are lowercased, not split per letter)
 * - `already-kebab` → `already-kebab`
 *
 * @param {string} name
 * @returns {string}
 */
export function kebab(name) {
  const str = String(name);
  if (str === str.toUpperCase() && str !== str.toLowerCase()) {
    return str.toLowerCase().replace(/_/g, "-");
  }
  let out = str.replace(/[A-Z]/g, (letter) => `-${letter.toLowerCase()}`);
  if (out.startsWith("-")) out = out.slice(1);
  return out.replace(/_/g, "-").replace(/-$/, "");
}
