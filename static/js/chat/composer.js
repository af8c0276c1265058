// The message box: grows with its text, Enter sends, Shift+Enter breaks the line, Stop (or Esc)
// while an answer is being written, and the character limit shown as it nears.
import { formatNumber, t } from "./i18n.js";

const WARN_AT = 0.9; // show the count from 90 % of the limit

export class Composer {
  constructor({ thread, socket, maxChars, tray = null }) {
    this.thread = thread;
    this.tray = tray; // the attached files (attachments.js)
    tray?.addEventListener("change", () => this.update());
    this.socket = socket;
    this.maxChars = maxChars;
    this.form = document.getElementById("composer");
    this.input = document.getElementById("composer-input");
    this.button = document.getElementById("send-btn");
    this.count = document.getElementById("char-count");
    this.input.addEventListener("input", () => this.update());
    this.input.addEventListener("keydown", (event) => this.onKey(event));
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      if (this.thread.generating) this.thread.stop();
      else this.submit();
    });
    document.addEventListener("keydown", (event) => {
      if (event.key !== "Escape" || event.defaultPrevented || !this.thread.generating) return;
      if (document.querySelector("dialog[open]")) return;
      this.thread.stop();
    });
    thread.addEventListener("change", () => this.update());
    thread.addEventListener("restore", (event) => {
      if (!this.input.value) {
        this.input.value = event.detail;
        this.update();
      }
    });
    socket.addEventListener("state", () => this.update());
    this.update();
    if (window.matchMedia("(min-width: 861px)").matches) this.input.focus();
  }

  onKey(event) {
    if (event.key !== "Enter" || event.shiftKey || event.isComposing || event.keyCode === 229) return;
    event.preventDefault();
    if (!this.thread.generating) this.submit();
  }

  submit() {
    const content = this.input.value;
    const files = this.tray?.ready() || [];
    if ((!content.trim() && !files.length) || content.length > this.maxChars || this.tray?.busy) return;
    if (this.thread.send(content, files)) {
      this.input.value = "";
      this.tray?.clear();
      this.update();
    }
  }

  update() {
    const length = this.input.value.length;
    // Grow with the text (CSSOM: allowed by the page's style-src 'self').
    this.input.style.height = "auto";
    this.input.style.height = `${this.input.scrollHeight}px`;
    const near = length >= this.maxChars * WARN_AT;
    this.count.hidden = !near;
    if (near) {
      const left = this.maxChars - length;
      this.count.textContent = left >= 0
        ? t("chars_left", { count: formatNumber(left) })
        : t("chars_over", { count: formatNumber(-left) });
      this.count.classList.toggle("is-over", left < 0);
    }
    const generating = this.thread.generating;
    this.button.classList.toggle("is-stop", generating);
    const label = generating ? t("stop") : t("send");
    this.button.setAttribute("aria-label", label);
    this.button.title = label;
    this.button.disabled = generating
      ? !this.socket.isOpen
      : (!this.input.value.trim() && !this.tray?.count) || this.tray?.busy || length > this.maxChars ||
        !this.socket.isOpen;
  }
}
