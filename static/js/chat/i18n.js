// Strings translated by the server (json_script "chat-strings"); the scripts never hold text.
const strings = JSON.parse(document.getElementById("chat-strings")?.textContent || "{}");

/** The translated string `key`, with %(name)s / %(name)d placeholders filled from `params`. */
export function t(key, params = {}) {
  const template = strings[key] ?? key;
  return template.replace(/%\((\w+)\)[sd]/g, (_, name) => String(params[name] ?? ""));
}

/** "Thought for N seconds" in the page's language. */
export function thoughtFor(seconds) {
  if (seconds == null) return t("thought");
  const count = Math.max(1, Math.round(seconds));
  return t(count === 1 ? "thought_one" : "thought_other", { count });
}

const numberFormat = new Intl.NumberFormat(document.documentElement.lang || undefined);
export const formatNumber = (value) => numberFormat.format(value);
