// Code blocks' copy buttons get their label in the page's language.
// The server's HTML is cached per message and shared by every language, so its copy buttons
// carry no text; each one is labelled here when it appears (page load, streamed answers).
import { gettext } from "./chat/i18n.js";

const SELECTOR = "button.copy-code";

function label(root) {
  const buttons = root.matches?.(SELECTOR) ? [root] : root.querySelectorAll?.(SELECTOR) || [];
  for (const button of buttons) {
    if (!button.classList.contains("is-done")) button.textContent = gettext("Copy");
  }
}

label(document);
new MutationObserver((records) => {
  for (const record of records) {
    for (const node of record.addedNodes) {
      if (node.nodeType === Node.ELEMENT_NODE) label(node);
    }
  }
}).observe(document.documentElement, { childList: true, subtree: true });
