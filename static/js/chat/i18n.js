// The page's language in the scripts, from two sources (the scripts never hold translations):
// - t(key): strings the server translated into the page (json_script "chat-strings");
// - gettext / ngettext: Django's JavaScriptCatalog (the "djangojs" domain, /jsi18n/), a classic
//   script the page loads before its modules. It brings the language's real plural rule, so
//   "N seconds" is right in every language. Its strings are written in the scripts and found
//   by `makemessages -d djangojs` (see the README's Translations).
const strings = JSON.parse(document.getElementById("chat-strings")?.textContent || "{}");
const catalog = globalThis.django;

/** The translated string `key`, with %(name)s / %(name)d placeholders filled from `params`. */
export function t(key, params = {}) {
  return interpolate(strings[key] ?? key, params);
}

/** `template` with its %(name)s / %(name)d placeholders filled from `params`. */
export function interpolate(template, params = {}) {
  return template.replace(/%\((\w+)\)[sd]/g, (_, name) => String(params[name] ?? ""));
}

/** `msgid` in the page's language (the JavaScript catalog). */
export function gettext(msgid) {
  return catalog ? catalog.gettext(msgid) : msgid;
}

/** The singular or plural of a message for `count`, by the language's plural rule. */
export function ngettext(singular, plural, count) {
  if (catalog) return catalog.ngettext(singular, plural, count);
  return count === 1 ? singular : plural;
}

/** "Thought for N seconds" in the page's language. */
export function thoughtFor(seconds) {
  if (seconds == null) return t("thought");
  const count = Math.max(1, Math.round(seconds));
  return interpolate(
    ngettext("Thought for %(count)d second", "Thought for %(count)d seconds", count),
    { count },
  );
}

const numberFormat = new Intl.NumberFormat(document.documentElement.lang || undefined);
export const formatNumber = (value) => numberFormat.format(value);
