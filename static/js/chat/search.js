// Search: a dialog opened by Ctrl/Cmd+K or the sidebar's search box. Results come from
// /api/search a page at a time (titles first, then the newest), each with a highlighted
// snippet the server escaped; ↑/↓ choose, Enter opens, Esc closes. A result opens its
// conversation at the message that matched (/c/<id>/?m=<message>), which is then scrolled to
// and highlighted, on whichever version it is (the server shows that version).
import { getJSON } from "./api.js";

const DELAY = 180;

export function setupSearch({ config, thread }) {
  const dialog = document.getElementById("search-dialog");
  if (!dialog) return;
  new Search(dialog, config, thread);
  showFoundMessage(thread);
}

/** /c/<id>/?m=<message>: scroll to that message and highlight it. */
function showFoundMessage(thread, id = new URLSearchParams(window.location.search).get("m")) {
  const el = thread.find(id);
  if (!el) return false;
  thread.sticky = false; // stay at the message while the page settles
  for (const other of thread.list.querySelectorAll(".search-found")) other.classList.remove("search-found");
  el.classList.add("search-found");
  requestAnimationFrame(() => el.scrollIntoView({ block: "center" }));
  return true;
}

class Search {
  constructor(dialog, config, thread) {
    this.dialog = dialog;
    this.config = config;
    this.thread = thread;
    this.url = dialog.dataset.url;
    this.input = document.getElementById("search-input");
    this.reasoning = document.getElementById("search-reasoning");
    this.list = document.getElementById("search-results");
    this.status = document.getElementById("search-status");
    this.sidebarBox = document.getElementById("sidebar-search");
    this.results = [];
    this.active = -1;
    this.next = null;
    this.loading = false;
    this.generation = 0; // bumps with every new query: answers to older ones are dropped
    this.timer = null;
    this.dateFormat = new Intl.DateTimeFormat(document.documentElement.lang || undefined, {
      dateStyle: "medium",
    });
    this.wire();
    this.setStatus(dialog.dataset.prompt);
  }

  wire() {
    document.addEventListener("keydown", (event) => {
      if ((event.ctrlKey || event.metaKey) && !event.altKey && event.key.toLowerCase() === "k") {
        event.preventDefault();
        this.open();
      }
    });
    if (this.sidebarBox) {
      // The sidebar's box is the way in for the mouse and touch: the dialog does the search.
      this.sidebarBox.readOnly = true;
      this.sidebarBox.setAttribute("aria-haspopup", "dialog");
      const mac = /Mac|iPhone|iPad/.test(navigator.platform || navigator.userAgent);
      this.sidebarBox.title = `${this.sidebarBox.placeholder} (${mac ? "⌘K" : "Ctrl+K"})`;
      const open = (event, typed = "") => {
        event.preventDefault();
        this.sidebarBox.blur();
        this.open();
        if (typed) {
          this.input.value = typed;
          this.run();
        }
      };
      this.sidebarBox.addEventListener("click", open);
      this.sidebarBox.addEventListener("keydown", (event) => {
        if (event.ctrlKey || event.metaKey || event.altKey) return;
        if (event.key === "Enter" || event.key === " ") open(event);
        else if (event.key.length === 1) open(event, event.key);
      });
    }
    this.input.addEventListener("input", () => {
      clearTimeout(this.timer);
      this.timer = setTimeout(() => this.run(), DELAY);
    });
    this.reasoning.addEventListener("change", () => {
      this.run();
      this.input.focus();
    });
    this.input.addEventListener("keydown", (event) => this.onKey(event));
    document.getElementById("search-close").addEventListener("click", () => this.dialog.close());
    this.dialog.addEventListener("click", (event) => {
      if (event.target === this.dialog) this.dialog.close(); // the backdrop
    });
    this.list.addEventListener("click", (event) => {
      const item = event.target.closest(".search-hit");
      if (!item || event.ctrlKey || event.metaKey || event.shiftKey || event.button !== 0) return;
      event.preventDefault();
      this.go(this.results[Number(item.dataset.index)]);
    });
    this.list.addEventListener("mousemove", (event) => {
      const item = event.target.closest(".search-hit");
      if (item) this.select(Number(item.dataset.index), false);
    });
    this.list.addEventListener("scroll", () => {
      const { scrollTop, scrollHeight, clientHeight } = this.list;
      if (scrollHeight - scrollTop - clientHeight < 120) this.loadMore();
    });
  }

  open() {
    if (!this.dialog.open) this.dialog.showModal();
    this.input.focus();
    this.input.select();
  }

  onKey(event) {
    if (event.isComposing) return; // an input method is still choosing characters
    if (event.key === "ArrowDown") {
      event.preventDefault();
      this.select(Math.min(this.active + 1, this.results.length - 1));
      if (this.active >= this.results.length - 3) this.loadMore();
    } else if (event.key === "ArrowUp") {
      event.preventDefault();
      this.select(Math.max(this.active - 1, 0));
    } else if (event.key === "Enter") {
      event.preventDefault();
      clearTimeout(this.timer);
      const result = this.results[this.active];
      if (result) this.go(result);
      else if (this.input.value.trim()) this.run();
    }
  }

  // --- results ----------------------------------------------------------------------------

  setStatus(text) {
    this.status.textContent = text || "";
  }

  params(cursor) {
    return {
      q: this.input.value.trim(),
      reasoning: this.reasoning.checked ? "1" : "",
      cursor: cursor || "",
    };
  }

  async run() {
    clearTimeout(this.timer);
    this.generation += 1;
    const generation = this.generation;
    const params = this.params();
    if (!params.q) {
      this.show([], null, true);
      this.setStatus(this.dialog.dataset.prompt);
      return;
    }
    this.setStatus(this.dialog.dataset.searching);
    this.loading = true;
    try {
      const page = await getJSON(this.url, params);
      if (generation !== this.generation) return;
      this.show(page.results, page.next, true);
      this.afterPage();
    } catch (error) {
      if (generation !== this.generation) return;
      this.show([], null, true);
      this.setStatus(error.data?.detail || this.dialog.dataset.failed);
    } finally {
      if (generation === this.generation) this.loading = false;
    }
  }

  async loadMore() {
    if (this.loading || !this.next) return;
    const generation = this.generation;
    this.loading = true;
    this.setStatus(this.results.length ? this.dialog.dataset.more : this.dialog.dataset.searching);
    try {
      const page = await getJSON(this.url, this.params(this.next));
      if (generation !== this.generation) return;
      this.show(page.results, page.next, false);
      this.afterPage();
    } catch (error) {
      if (generation === this.generation) this.setStatus(error.data?.detail || this.dialog.dataset.failed);
    } finally {
      if (generation === this.generation) this.loading = false;
    }
  }

  /** A page may come back short with a cursor (the server scans a rare short term a slice
   * at a time): keep asking while the list does not fill its box. */
  afterPage() {
    if (this.results.length) this.setStatus("");
    else this.setStatus(this.next ? this.dialog.dataset.searching : this.dialog.dataset.empty);
    requestAnimationFrame(() => {
      if (this.next && this.list.scrollHeight - this.list.clientHeight < 120) this.loadMore();
    });
  }

  show(results, next, replace) {
    if (replace) {
      this.results = [];
      this.list.replaceChildren();
      this.active = -1;
    }
    for (const result of results) {
      const index = this.results.length;
      this.results.push(result);
      this.list.append(this.item(result, index));
    }
    this.next = next;
    this.input.setAttribute("aria-expanded", String(this.results.length > 0));
    if (replace && this.results.length) this.select(0);
  }

  item(result, index) {
    const li = document.createElement("li");
    li.className = "search-hit";
    li.id = `search-hit-${index}`;
    li.dataset.index = String(index);
    li.setAttribute("role", "option");
    li.setAttribute("aria-selected", "false");
    const link = document.createElement("a");
    link.href = result.url;
    link.tabIndex = -1;
    const title = document.createElement("span");
    title.className = "search-hit-title";
    title.innerHTML = result.title_html; // escaped by the server, <mark> only
    const meta = document.createElement("span");
    meta.className = "search-hit-meta";
    const when = new Date(result.updated_at);
    meta.textContent = `${result.where_label} · ${Number.isNaN(when.getTime()) ? "" : this.dateFormat.format(when)}`;
    link.append(title, meta);
    if (result.snippet_html) {
      const snippet = document.createElement("span");
      snippet.className = "search-hit-snippet";
      snippet.innerHTML = result.snippet_html; // escaped by the server, <mark> only
      link.append(snippet);
    }
    li.append(link);
    return li;
  }

  select(index, scroll = true) {
    if (index < 0 || index >= this.results.length) return;
    this.list.querySelector('[aria-selected="true"]')?.setAttribute("aria-selected", "false");
    this.active = index;
    const item = this.list.children[index];
    item.setAttribute("aria-selected", "true");
    this.input.setAttribute("aria-activedescendant", item.id);
    if (scroll) item.scrollIntoView({ block: "nearest" });
  }

  /** Open a result: in place when it is in the thread on screen, else by its address. */
  go(result) {
    if (result.conversation === this.thread.conversation && result.message) {
      if (showFoundMessage(this.thread, result.message)) {
        this.dialog.close();
        return;
      }
    }
    this.dialog.close();
    window.location.assign(result.url);
  }
}
