// Files attached to a question: the paperclip, drag-and-drop and paste into the composer, the
// upload of each file before the question is sent (POST /api/attachments), its chip (name,
// size, ×), and the chips on sent messages, which open the text the model was given.
import { getJSON } from "./api.js";
import { formatNumber, t } from "./i18n.js";
import { toast } from "./ui.js";

const csrfToken = document.querySelector('meta[name="csrf-token"]')?.content || "";

function sizeLabel(size) {
  if (size < 1024) return t("file_bytes", { count: formatNumber(size) });
  if (size < 1024 * 1024) return t("file_kb", { count: formatNumber(Math.round(size / 102.4) / 10) });
  return t("file_mb", { count: formatNumber(Math.round(size / 104857.6) / 10) });
}

function span(className, text) {
  const el = document.createElement("span");
  el.className = className;
  el.textContent = text;
  return el;
}

/** A chip for a file (the server's `attachments.chip`; the markup of `markup.file_chip`). */
export function fileChip(file) {
  const chip = document.createElement("li");
  chip.className = "file-chip";
  chip.dataset.id = file.id || "";
  chip.dataset.kind = file.kind || "";
  chip.title = file.name;
  chip.tabIndex = 0;
  chip.setAttribute("role", "button");
  let icon = span("file-chip-kind", file.label || "");
  if (file.thumbnail) {
    icon = document.createElement("img");
    icon.className = "file-chip-thumb";
    icon.src = file.thumbnail;
    icon.alt = "";
  }
  chip.append(
    icon,
    span("file-chip-name", file.name),
    span("file-chip-size", file.size_label || sizeLabel(file.size)),
  );
  return chip;
}

/** Show a user message's files (a serialised message's `attachments`). */
export function showFiles(el, files) {
  const list = el.querySelector(".msg-files");
  if (!list) return;
  list.replaceChildren(...(files || []).map((file) => fileChip(file)));
  list.hidden = !list.childElementCount;
}

/** The composer's files: uploaded as soon as they are chosen, sent by id with the question. */
export class AttachmentTray extends EventTarget {
  constructor({ config, settings, thread }) {
    super();
    this.config = config;
    this.settings = settings;
    this.limits = config.attachments;
    this.list = document.getElementById("composer-files");
    this.input = document.getElementById("attach-input");
    this.form = document.getElementById("composer");
    this.entries = []; // {file (the chip's data once uploaded), chip, uploading}
    document.getElementById("attach-btn").addEventListener("click", () => this.input.click());
    this.input.addEventListener("change", () => {
      this.add([...this.input.files]);
      this.input.value = "";
    });
    document.getElementById("composer-input").addEventListener("paste", (event) => {
      const files = [...(event.clipboardData?.files || [])];
      if (!files.length) return;
      event.preventDefault();
      this.add(files);
    });
    const main = document.getElementById("main");
    main.addEventListener("dragover", (event) => {
      if (!event.dataTransfer?.types?.includes("Files")) return;
      event.preventDefault();
      this.form.classList.add("is-dropping");
    });
    main.addEventListener("dragleave", (event) => {
      if (!main.contains(event.relatedTarget)) this.form.classList.remove("is-dropping");
    });
    main.addEventListener("drop", (event) => {
      this.form.classList.remove("is-dropping");
      if (!event.dataTransfer?.files?.length) return;
      event.preventDefault();
      this.add([...event.dataTransfer.files]);
    });
    thread.addEventListener("restore-files", (event) => this.restore(event.detail));
    document.getElementById("thread").addEventListener("click", (event) => this.onThreadClick(event));
    document.getElementById("thread").addEventListener("keydown", (event) => {
      if (event.key === "Enter" || event.key === " ") this.onThreadClick(event);
    });
  }

  get busy() {
    return this.entries.some((entry) => entry.uploading);
  }

  get count() {
    return this.entries.filter((entry) => !entry.uploading).length;
  }

  /** The uploaded files' chips, in order. */
  ready() {
    return this.entries.filter((entry) => !entry.uploading).map((entry) => entry.file);
  }

  /** The question went out with the files: empty the tray (the files now belong to it). */
  clear() {
    this.entries = [];
    this.list.replaceChildren();
    this.changed();
  }

  /** A question that was refused: its files come back to the composer. */
  restore(files) {
    if (!files?.length || this.entries.length) return;
    for (const file of files) this.append({ file, uploading: false });
    this.changed();
  }

  changed() {
    this.list.hidden = !this.entries.length;
    this.dispatchEvent(new CustomEvent("change"));
  }

  add(files) {
    for (const file of files) {
      if (this.entries.length >= this.limits.max_files) {
        toast(t("too_many_files", { limit: this.limits.max_files }), { error: true });
        break;
      }
      if (file.size > this.limits.max_bytes) {
        toast(t("file_too_large", { name: file.name, limit: sizeLabel(this.limits.max_bytes) }), { error: true });
        continue;
      }
      const entry = this.append({ file: { id: "", name: file.name, size: file.size, kind: "", label: "…" }, uploading: true });
      this.upload(entry, file);
    }
    this.changed();
  }

  append(entry) {
    const chip = fileChip(entry.file);
    chip.removeAttribute("role");
    chip.removeAttribute("tabindex");
    chip.classList.toggle("is-uploading", entry.uploading);
    if (entry.uploading) chip.querySelector(".file-chip-size").textContent = t("uploading");
    const remove = document.createElement("button");
    remove.type = "button";
    remove.className = "file-chip-remove";
    remove.setAttribute("aria-label", t("remove_file"));
    remove.title = t("remove_file");
    remove.textContent = "×";
    remove.addEventListener("click", () => this.remove(entry));
    chip.append(remove);
    entry.chip = chip;
    this.entries.push(entry);
    this.list.append(chip);
    return entry;
  }

  async upload(entry, file) {
    const body = new FormData();
    body.append("file", file, file.name);
    const chosen = this.settings.current();
    if (chosen.backend) body.append("backend", String(chosen.backend));
    if (chosen.model) body.append("model", chosen.model);
    let data = null;
    let ok = false;
    try {
      const response = await fetch(this.config.urls.attachments, {
        method: "POST",
        headers: { Accept: "application/json", "X-CSRFToken": csrfToken, "X-File-Name": encodeURIComponent(file.name).slice(0, 255) },
        credentials: "same-origin",
        body,
      });
      ok = response.ok;
      data = await response.json().catch(() => null);
    } catch {
      ok = false;
    }
    if (!this.entries.includes(entry)) {
      if (ok && data?.attachment) this.discard(data.attachment.id); // removed while uploading
      return;
    }
    if (!ok || !data?.attachment) {
      this.drop(entry);
      toast(data?.detail || t("upload_failed", { name: file.name }), { error: true, timeout: 6000 });
      return;
    }
    entry.file = data.attachment;
    entry.uploading = false;
    const chip = fileChip(entry.file);
    chip.removeAttribute("role");
    chip.removeAttribute("tabindex");
    chip.append(entry.chip.querySelector(".file-chip-remove"));
    entry.chip.replaceWith(chip);
    entry.chip = chip;
    this.changed();
  }

  drop(entry) {
    this.entries = this.entries.filter((item) => item !== entry);
    entry.chip.remove();
    this.changed();
  }

  remove(entry) {
    this.drop(entry);
    if (entry.file.id) this.discard(entry.file.id);
    document.getElementById("composer-input").focus();
  }

  discard(id) {
    const url = `${this.config.urls.attachments}/${encodeURIComponent(id)}/delete`;
    fetch(url, { method: "POST", headers: { "X-CSRFToken": csrfToken }, credentials: "same-origin" }).catch(() => {});
  }

  async onThreadClick(event) {
    const chip = event.target.closest?.(".msg-files .file-chip");
    if (!chip?.dataset.id) return;
    event.preventDefault();
    let data;
    try {
      data = await getJSON(`${this.config.urls.attachments}/${encodeURIComponent(chip.dataset.id)}`);
    } catch {
      toast(t("request_failed"), { error: true });
      return;
    }
    const file = data.attachment;
    const dialog = document.getElementById("file-dialog");
    dialog.querySelector(".file-dialog-title").textContent = file.name;
    dialog.querySelector(".file-dialog-meta").textContent = [
      file.label,
      file.size_label,
      file.pages ? t("file_pages", { count: formatNumber(file.pages) }) : "",
    ].filter(Boolean).join(" · ");
    const text = dialog.querySelector(".file-dialog-text");
    const image = dialog.querySelector(".file-dialog-image");
    text.textContent = file.text;
    text.hidden = file.kind === "image";
    image.hidden = file.kind !== "image";
    if (file.kind === "image") image.src = file.thumbnail;
    else image.removeAttribute("src");
    dialog.showModal();
  }
}
