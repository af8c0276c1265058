// Small page-wide helpers: toasts, popovers, clipboard.
import { t } from "./i18n.js";

const toasts = document.getElementById("toasts");

export function toast(text, { error = false, timeout = 3500 } = {}) {
  const item = document.createElement("div");
  item.className = error ? "toast is-error" : "toast";
  item.setAttribute("role", error ? "alert" : "status");
  item.textContent = text;
  toasts.append(item);
  setTimeout(() => item.remove(), timeout);
}

let openPopover = null;

/** Show `popover` beside `anchor` (fixed position, kept on screen); one open at a time. */
export function showPopover(popover, anchor, { align = "start", above = false } = {}) {
  closePopover();
  popover.hidden = false;
  const box = anchor.getBoundingClientRect();
  const width = popover.offsetWidth;
  const height = popover.offsetHeight;
  let left = align === "end" ? box.right - width : box.left;
  left = Math.max(8, Math.min(left, window.innerWidth - width - 8));
  let top = above ? box.top - height - 6 : box.bottom + 6;
  if (top + height > window.innerHeight - 8) top = box.top - height - 6;
  top = Math.max(8, top);
  popover.style.left = `${left}px`;
  popover.style.top = `${top}px`;
  anchor.setAttribute("aria-expanded", "true");
  openPopover = { popover, anchor };
  popover.querySelector("button:not([hidden]), a, select")?.focus({ preventScroll: true });
}

export function closePopover() {
  if (!openPopover) return;
  openPopover.popover.hidden = true;
  openPopover.anchor.setAttribute("aria-expanded", "false");
  openPopover = null;
}

export function popoverIsOpen(popover) {
  return openPopover?.popover === popover;
}

document.addEventListener("pointerdown", (event) => {
  if (!openPopover) return;
  if (openPopover.popover.contains(event.target) || openPopover.anchor.contains(event.target)) return;
  closePopover();
});
document.addEventListener("keydown", (event) => {
  if (event.key === "Escape" && openPopover) {
    const { anchor } = openPopover;
    closePopover();
    anchor.focus();
    event.stopPropagation();
  }
}, true);
window.addEventListener("resize", closePopover);

export async function copyText(text, button = null) {
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    // Clipboard API refused (no focus, plain HTTP): the old way.
    const area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.className = "visually-hidden";
    document.body.append(area);
    area.select();
    const ok = document.execCommand("copy");
    area.remove();
    if (!ok) {
      toast(t("copy_failed"), { error: true });
      return false;
    }
  }
  if (button) {
    button.classList.add("is-done");
    const label = button.getAttribute("aria-label");
    if (button.classList.contains("copy-code")) button.textContent = t("copied");
    setTimeout(() => {
      button.classList.remove("is-done");
      if (button.classList.contains("copy-code")) button.textContent = t("copy");
      if (label) button.setAttribute("aria-label", label);
    }, 1500);
  } else {
    toast(t("copied"));
  }
  return true;
}
