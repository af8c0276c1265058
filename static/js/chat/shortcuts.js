// Keyboard shortcuts of the chat page and the dialog that lists them (Ctrl/Cmd+/).
//
// Ctrl/Cmd+Shift+O starts a new chat; ↑ in the empty message box edits your last message; Esc
// stops the answer being written (composer.js, when no dialog is open). Ctrl/Cmd+K (search) is
// the search dialog's own; it is listed here. A key is only taken where it means nothing else:
// ↑ only in an empty message box, the others have no meaning in a text field.
import { t } from "./i18n.js";
import { closePopover } from "./ui.js";

const platform = navigator.userAgentData?.platform || navigator.platform || "";
export const IS_MAC = /mac|iphone|ipad|ipod/i.test(platform);
const MOD = IS_MAC ? "⌘" : "Ctrl";
const SHIFT = IS_MAC ? "⇧" : "Shift";

/** The shortcut list: [keys, label key]. */
function shortcuts() {
  return [
    [[MOD, "K"], "shortcut_search"],
    [[MOD, SHIFT, "O"], "shortcut_new_chat"],
    [["Esc"], "shortcut_stop"],
    [["↑"], "shortcut_edit_last"],
    [["Enter"], "shortcut_send"],
    [[SHIFT, "Enter"], "shortcut_newline"],
    [[MOD, "/"], "shortcut_help"],
  ];
}

/** The platform's "command" modifier, alone (no Alt, no other one of Ctrl/Meta). */
function withMod(event) {
  if (event.altKey) return false;
  return IS_MAC ? event.metaKey && !event.ctrlKey : event.ctrlKey && !event.metaKey;
}

function buildDialog() {
  const dialog = document.createElement("dialog");
  dialog.className = "dialog shortcuts-dialog";
  dialog.id = "shortcuts-dialog";
  dialog.setAttribute("aria-labelledby", "shortcuts-title");
  const head = document.createElement("div");
  head.className = "shortcuts-head";
  const title = document.createElement("h2");
  title.id = "shortcuts-title";
  title.textContent = t("shortcuts_title");
  const close = document.createElement("button");
  close.type = "button";
  close.className = "icon-btn";
  close.setAttribute("aria-label", t("close"));
  close.title = t("close");
  close.textContent = "×";
  close.addEventListener("click", () => dialog.close());
  head.append(title, close);
  const list = document.createElement("dl");
  list.className = "shortcuts-list";
  for (const [keys, label] of shortcuts()) {
    const row = document.createElement("div");
    row.className = "shortcut";
    const name = document.createElement("dt");
    name.textContent = t(label);
    const combo = document.createElement("dd");
    for (const key of keys) {
      const kbd = document.createElement("kbd");
      kbd.textContent = key;
      combo.append(kbd);
    }
    row.append(name, combo);
    list.append(row);
  }
  dialog.append(head, list);
  // A click on the backdrop (outside the box) closes it.
  dialog.addEventListener("click", (event) => {
    if (event.target === dialog) dialog.close();
  });
  document.body.append(dialog);
  return dialog;
}

export function setupShortcuts({ thread, config }) {
  let dialog = null;
  const input = document.getElementById("composer-input");

  const showHelp = () => {
    closePopover();
    dialog ??= buildDialog();
    if (!dialog.open) dialog.showModal();
  };
  document.getElementById("shortcuts-btn")?.addEventListener("click", showHelp);

  document.addEventListener("keydown", (event) => {
    if (event.defaultPrevented || event.isComposing) return;
    const modal = document.querySelector("dialog[open]");
    if (withMod(event) && (event.key === "/" || event.code === "Slash") && !event.shiftKey) {
      event.preventDefault();
      if (dialog?.open) dialog.close();
      else if (!modal) showHelp();
      return;
    }
    if (modal) return; // a dialog has the keyboard
    if (withMod(event) && event.shiftKey && (event.code === "KeyO" || event.key.toLowerCase() === "o")) {
      event.preventDefault();
      window.location.assign(config.urls.home);
    }
  });

  // ↑ in the empty message box: edit the last message you sent (the usual edit flow).
  input.addEventListener("keydown", (event) => {
    if (event.key !== "ArrowUp" || event.isComposing || input.value !== "") return;
    if (event.shiftKey || event.altKey || event.ctrlKey || event.metaKey) return;
    if (thread.generating) return;
    const mine = thread.list.querySelectorAll(".msg-user");
    const last = mine[mine.length - 1];
    if (!last) return;
    event.preventDefault();
    last.scrollIntoView({ block: "nearest" });
    thread.startEdit(last);
  });
}
