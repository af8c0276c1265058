// The history sidebar: groups by date, pages in as you scroll, and the per-chat menu (rename
// inline, pin, delete after a confirmation). Live changes come from conversation.created /
// conversation.updated frames, so every tab shows the same list. Its search box opens the
// search dialog (search.js).
import { getJSON, postJSON } from "./api.js";
import { t } from "./i18n.js";
import { closePopover, popoverIsOpen, showPopover, toast } from "./ui.js";

const DAY = 24 * 60 * 60 * 1000;

export class Sidebar {
  constructor({ config, onCurrentDeleted }) {
    this.config = config;
    this.onCurrentDeleted = onCurrentDeleted;
    this.current = config.conversation;
    this.app = document.getElementById("app");
    this.list = document.getElementById("conv-list");
    this.scroller = document.getElementById("conv-scroll");
    this.empty = document.getElementById("conv-empty");
    this.menu = document.getElementById("conv-menu");
    this.dialog = document.getElementById("confirm-dialog");
    this.template = document.getElementById("tpl-conv-item");
    this.next = this.list.dataset.next || null;
    this.loading = false;
    this.menuItem = null;
    this.monthFormat = new Intl.DateTimeFormat(document.documentElement.lang || undefined, {
      year: "numeric",
      month: "long",
    });
    this.regroup();
    this.wire();
  }

  wire() {
    this.sentinelObserver = new IntersectionObserver(
      (entries) => {
        if (entries.some((entry) => entry.isIntersecting)) this.loadMore();
      },
      { root: this.scroller, rootMargin: "200px" },
    );
    this.sentinelObserver.observe(document.getElementById("conv-sentinel"));
    this.list.addEventListener("click", (event) => {
      const button = event.target.closest(".conv-menu-btn");
      if (!button) return;
      event.preventDefault();
      const item = button.closest(".conv-item");
      if (popoverIsOpen(this.menu) && this.menuItem === item) return closePopover();
      this.menuItem = item;
      const pinned = item.dataset.pinned === "true";
      this.menu.querySelector('[data-action="pin"]').hidden = pinned;
      this.menu.querySelector('[data-action="unpin"]').hidden = !pinned;
      showPopover(this.menu, button, { align: "start" });
    });
    this.menu.addEventListener("click", (event) => {
      const action = event.target.closest("[data-action]")?.dataset.action;
      const item = this.menuItem;
      closePopover();
      if (!action || !item) return;
      if (action === "rename") this.startRename(item);
      else if (action === "pin" || action === "unpin") this.pin(item, action === "pin");
      else if (action === "delete") this.confirmDelete(item);
      else this.dispatchAction(action, item);
    });
    // The drawer on narrow screens; a collapsible column on wide ones.
    const open = document.getElementById("sidebar-open");
    const close = () => {
      this.app.classList.remove("drawer-open");
      document.getElementById("scrim").hidden = true;
      open.setAttribute("aria-expanded", "false");
    };
    open.addEventListener("click", () => {
      if (window.matchMedia("(max-width: 860px)").matches) {
        this.app.classList.add("drawer-open");
        document.getElementById("scrim").hidden = false;
        open.setAttribute("aria-expanded", "true");
      } else {
        this.app.classList.remove("sidebar-collapsed");
      }
    });
    document.getElementById("scrim").addEventListener("click", close);
    document.getElementById("sidebar-close").addEventListener("click", () => {
      if (window.matchMedia("(max-width: 860px)").matches) close();
      else this.app.classList.add("sidebar-collapsed");
    });
    document.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && this.app.classList.contains("drawer-open")) close();
    });
  }

  // --- items and groups -------------------------------------------------------------------

  items() {
    return [...this.list.querySelectorAll(".conv-item")];
  }

  find(id) {
    return this.list.querySelector(`.conv-item[data-id="${CSS.escape(id)}"]`);
  }

  build(data) {
    const item = this.template.content.firstElementChild.cloneNode(true);
    this.fill(item, data);
    return item;
  }

  fill(item, data) {
    item.dataset.id = data.id;
    if (data.pinned != null) item.dataset.pinned = String(Boolean(data.pinned));
    if (data.updated_at) item.dataset.updated = data.updated_at;
    const link = item.querySelector(".conv-link");
    link.href = this.config.urls.conversation.replace("00000000-0000-0000-0000-000000000000", data.id);
    if (data.title != null) item.querySelector(".conv-title").textContent = data.title || t("new_chat");
    const active = data.id === this.current;
    item.classList.toggle("is-active", active);
    if (active) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }

  groupOf(item, today) {
    if (item.dataset.pinned === "true") return ["pinned", t("pinned")];
    const updated = new Date(item.dataset.updated);
    const day = new Date(updated.getFullYear(), updated.getMonth(), updated.getDate());
    const age = Math.round((today - day) / DAY);
    if (age <= 0) return ["today", t("today")];
    if (age === 1) return ["yesterday", t("yesterday")];
    if (age < 7) return ["week", t("week")];
    if (age < 30) return ["month", t("month")];
    return [`${day.getFullYear()}-${day.getMonth() + 1}`, this.monthFormat.format(day)];
  }

  /** Group headers, recomputed in the browser's time zone from each item's date. */
  regroup() {
    for (const header of this.list.querySelectorAll(".conv-group")) header.remove();
    const now = new Date();
    const today = new Date(now.getFullYear(), now.getMonth(), now.getDate());
    let previous = null;
    for (const item of this.items()) {
      const [key, label] = this.groupOf(item, today);
      item.dataset.group = key;
      if (key !== previous) {
        const header = document.createElement("li");
        header.className = "conv-group";
        header.dataset.group = key;
        header.textContent = label;
        item.before(header);
        previous = key;
      }
    }
    this.empty.hidden = this.items().length > 0;
  }

  /** Put an item where (pinned, updated_at) says, among the loaded ones. */
  place(item) {
    const pinned = item.dataset.pinned === "true";
    const updated = Date.parse(item.dataset.updated) || 0;
    const before = this.items().find((other) => {
      if (other === item) return false;
      const otherPinned = other.dataset.pinned === "true";
      if (otherPinned !== pinned) return pinned;
      return (Date.parse(other.dataset.updated) || 0) < updated;
    });
    if (before) before.before(item);
    else if (!this.next) this.list.append(item);
    else item.remove(); // belongs to a page not loaded yet
  }

  upsert(data) {
    let item = this.find(data.id);
    if (!item) item = this.build(data);
    else this.fill(item, data);
    this.place(item);
    this.regroup();
  }

  remove(id) {
    this.find(id)?.remove();
    this.regroup();
  }

  setCurrent(id) {
    this.current = id;
    for (const item of this.items()) this.fill(item, { id: item.dataset.id });
  }

  // --- pages ------------------------------------------------------------------------------

  async loadMore() {
    if (this.loading || !this.next) return;
    this.loading = true;
    try {
      const page = await getJSON(this.config.urls.conversations, { cursor: this.next });
      this.appendPage(page);
    } catch {
      toast(t("request_failed"), { error: true });
    } finally {
      this.loading = false;
    }
  }

  appendPage(page) {
    for (const data of page.items) {
      if (this.find(data.id)) continue;
      this.list.append(this.build(data));
    }
    this.next = page.next;
    this.regroup();
    // A short page may not fill the column: keep going while the sentinel shows.
    requestAnimationFrame(() => {
      const sentinel = document.getElementById("conv-sentinel").getBoundingClientRect();
      if (this.next && sentinel.top < this.scroller.getBoundingClientRect().bottom + 200) this.loadMore();
    });
  }

  // --- rename, pin, delete ----------------------------------------------------------------

  url(item, action) {
    return `${this.config.urls.conversation.replace("00000000-0000-0000-0000-000000000000", item.dataset.id)}${action}`;
  }

  startRename(item) {
    const link = item.querySelector(".conv-link");
    const title = item.querySelector(".conv-title").textContent;
    const input = document.createElement("input");
    input.className = "conv-rename";
    input.value = title;
    input.maxLength = 200;
    input.setAttribute("aria-label", title);
    link.hidden = true;
    link.after(input);
    input.focus();
    input.select();
    let done = false;
    const finish = async (save) => {
      if (done) return;
      done = true;
      const value = input.value.trim();
      input.remove();
      link.hidden = false;
      if (!save || !value || value === title) return;
      item.querySelector(".conv-title").textContent = value;
      try {
        const result = await postJSON(this.url(item, "rename"), { title: value });
        this.fill(item, result.conversation);
        this.dispatchRenamed(result.conversation);
      } catch {
        item.querySelector(".conv-title").textContent = title;
        toast(t("rename_failed"), { error: true });
      }
    };
    input.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.isComposing) {
        event.preventDefault();
        finish(true);
      } else if (event.key === "Escape") {
        event.preventDefault();
        event.stopPropagation();
        finish(false);
      }
    });
    input.addEventListener("blur", () => finish(true));
  }

  /** Menu actions another module handles (share.js: "share"). */
  dispatchAction(action, item) {
    const title = item.querySelector(".conv-title").textContent;
    const detail = { action, id: item.dataset.id, title };
    document.dispatchEvent(new CustomEvent("r1chat:conversation-action", { detail }));
  }

  dispatchRenamed(conversation) {
    document.dispatchEvent(new CustomEvent("r1chat:renamed", { detail: conversation }));
  }

  async pin(item, pinned) {
    try {
      const result = await postJSON(this.url(item, "pin"), { pinned });
      this.fill(item, result.conversation);
      this.place(item);
      this.regroup();
    } catch {
      toast(t("request_failed"), { error: true });
    }
  }

  confirmDelete(item) {
    const title = item.querySelector(".conv-title").textContent;
    document.getElementById("confirm-text").textContent = t("delete_text", { title });
    this.dialog.returnValue = "";
    this.dialog.addEventListener(
      "close",
      () => {
        if (this.dialog.returnValue === "confirm") this.delete(item);
      },
      { once: true },
    );
    this.dialog.showModal();
  }

  /** Delete, then offer Undo (state.js hears r1chat:deleting, :deleted, :delete-failed). */
  async delete(item) {
    const id = item.dataset.id;
    const detail = { id, current: id === this.current };
    const tell = (name) => document.dispatchEvent(new CustomEvent(`r1chat:${name}`, { detail }));
    tell("deleting");
    try {
      await postJSON(this.url(item, "delete"));
    } catch {
      tell("delete-failed");
      toast(t("request_failed"), { error: true });
      return;
    }
    this.remove(id);
    tell("deleted");
    if (detail.current) this.onCurrentDeleted();
  }
}
