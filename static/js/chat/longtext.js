// Long texts: the message box never cuts a text (composer.js counts from 90 % of the limit and
// refuses to send past it; this says why, in words), and long messages of yours in the thread
// are shown folded with "Show more" / "Show less".
import { formatNumber, t } from "./i18n.js";

const FOLD_CHARS = 600; // shorter texts are never folded (no measuring needed)
const FOLD_LINES = 10;

export function setupLongText({ config }) {
  watchLimit(config.max_chars);
  const list = document.getElementById("thread");
  foldAll(list.querySelectorAll(".msg-user"));
  new MutationObserver((records) => {
    const added = [];
    for (const record of records) {
      for (const node of record.addedNodes) {
        if (node.nodeType === Node.ELEMENT_NODE && node.matches(".msg-user")) added.push(node);
      }
    }
    if (added.length) foldAll(added);
  }).observe(list, { childList: true });
  list.addEventListener("click", (event) => {
    const button = event.target.closest(".user-more");
    if (!button) return;
    const text = button.parentElement.querySelector(".user-text");
    const folded = text.classList.toggle("is-folded");
    setButton(button, folded);
  });
}

// --- the limit of the message box -----------------------------------------------------------

function watchLimit(limit) {
  const input = document.getElementById("composer-input");
  input.removeAttribute("maxlength"); // (a browser's maxlength cuts a paste silently)
  const note = document.createElement("p");
  note.className = "composer-over";
  note.id = "composer-over";
  note.setAttribute("role", "alert");
  note.hidden = true;
  document.getElementById("composer").after(note);
  const update = () => {
    const over = input.value.length > limit;
    if (over === !note.hidden) return;
    note.hidden = !over;
    note.textContent = over ? t("too_long", { limit: formatNumber(limit) }) : "";
    input.setAttribute("aria-invalid", String(over));
    if (over) input.setAttribute("aria-describedby", note.id);
    else input.removeAttribute("aria-describedby");
  };
  input.addEventListener("input", update);
  // (the box is also filled by scripts: a text given back after a failed send)
  new MutationObserver(update).observe(document.getElementById("char-count"), {
    childList: true,
    attributes: true,
  });
}

// --- folding long messages ----------------------------------------------------------------

function foldAll(messages) {
  // Writes first, then reads, then writes: one layout for the lot.
  const candidates = [];
  for (const el of messages) {
    const text = el.querySelector(".user-text");
    if (!text || text.classList.contains("is-foldable")) continue;
    const value = text.textContent;
    if (value.length < FOLD_CHARS && value.split("\n").length <= FOLD_LINES) continue;
    text.classList.add("is-folded");
    candidates.push(text);
  }
  const tall = candidates.filter((text) => text.scrollHeight > text.clientHeight + 2);
  for (const text of candidates) {
    if (!tall.includes(text)) text.classList.remove("is-folded");
  }
  for (const text of tall) {
    text.classList.add("is-foldable");
    const button = document.createElement("button");
    button.type = "button";
    button.className = "user-more";
    setButton(button, true);
    text.after(button);
  }
}

function setButton(button, folded) {
  button.textContent = folded ? t("show_more") : t("show_less");
  button.setAttribute("aria-expanded", String(!folded));
}
