// The model picker: a button showing the chosen model and a searchable list of every model,
// grouped by backend. Type to filter (every word must match the model's or the backend's
// name), ↑/↓ to move, Enter to choose, Esc to close. Full names wrap instead of being cut;
// thinking models carry a badge. A backend that offers no model now says why, in the page's
// language (the server translates the reason).
import { t } from "./i18n.js";

let nextId = 0;

export class ModelPicker {
  constructor({ root, onChoose }) {
    this.root = root;
    this.onChoose = onChoose;
    this.button = root.querySelector(".picker-button");
    this.current = root.querySelector(".picker-current");
    this.pop = root.querySelector(".picker-pop");
    this.search = root.querySelector(".picker-search");
    this.list = root.querySelector(".picker-list");
    this.empty = root.querySelector(".picker-empty");
    this.entries = []; // { backend, model, el } in display order
    // The models as `options`, as the <select> it replaces had them (scripts and tests that
    // wait for the list read its length).
    Object.defineProperty(root, "options", { get: () => this.list.querySelectorAll('[role="option"]') });
    this.chosen = null;
    this.active = null;
    this.button.addEventListener("click", () => (this.isOpen ? this.close() : this.open()));
    this.button.addEventListener("keydown", (event) => {
      if (event.key === "ArrowDown" || event.key === "ArrowUp") {
        event.preventDefault();
        this.open();
      }
    });
    this.search.addEventListener("input", () => this.filter());
    this.search.addEventListener("keydown", (event) => this.onKey(event));
    this.list.addEventListener("pointerdown", (event) => event.preventDefault()); // keep focus
    this.list.addEventListener("click", (event) => {
      const el = event.target.closest('[role="option"]');
      const entry = el && this.entries.find((item) => item.el === el);
      if (entry && el.getAttribute("aria-disabled") !== "true") this.choose(entry);
    });
    this.list.addEventListener("pointermove", (event) => {
      const el = event.target.closest('[role="option"]');
      const entry = el && this.entries.find((item) => item.el === el);
      if (entry && !entry.el.hidden && el.getAttribute("aria-disabled") !== "true") this.activate(entry, false);
    });
    document.addEventListener("pointerdown", (event) => {
      if (this.isOpen && !this.root.contains(event.target)) this.close(false);
    });
  }

  get isOpen() {
    return !this.pop.hidden;
  }

  setDisabled(disabled) {
    this.button.disabled = disabled;
  }

  showText(text) {
    this.current.textContent = text;
    this.button.title = text;
  }

  /** Fill the list from /api/models' backends. */
  fill(backends) {
    this.entries = [];
    const items = [];
    for (const backend of backends) {
      const name = backend.simulated ? t("simulator") : backend.name;
      const group = document.createElement("li");
      group.className = "picker-group";
      group.setAttribute("role", "presentation");
      const title = document.createElement("span");
      title.className = "picker-group-name";
      title.textContent = name;
      group.append(title);
      if (!backend.available) {
        const why = document.createElement("span");
        why.className = "picker-group-reason";
        why.textContent = t("picker_unavailable", { reason: backend.reason || t("unavailable") });
        group.append(why);
      } else if (!backend.models.length) {
        const why = document.createElement("span");
        why.className = "picker-group-reason";
        why.textContent = t("no_models");
        group.append(why);
      }
      items.push(group);
      const groupEntries = [];
      for (const model of backend.models) {
        const el = document.createElement("li");
        el.id = `picker-option-${nextId++}`;
        el.className = "picker-option";
        el.setAttribute("role", "option");
        el.setAttribute("aria-selected", "false");
        if (!backend.available) el.setAttribute("aria-disabled", "true");
        el.title = `${model.name} · ${name}`;
        const label = document.createElement("span");
        label.className = "picker-option-name";
        label.textContent = model.name;
        el.append(label);
        if (model.thinking === "always" || model.thinking === "on_off") {
          const badge = document.createElement("span");
          badge.className = "picker-badge";
          badge.textContent = t("picker_thinks");
          badge.title = t("picker_thinks_hint");
          el.append(badge);
        }
        const entry = { backend, model, el, group, haystack: `${model.name} ${name}`.toLowerCase() };
        groupEntries.push(entry);
        items.push(el);
      }
      group.entries = groupEntries;
      this.entries.push(...groupEntries);
    }
    this.list.replaceChildren(...items);
    this.markChosen();
  }

  /** Show `choice` ({backend, model}) as chosen, without telling onChoose. */
  select(choice) {
    this.chosen = choice;
    this.markChosen();
  }

  markChosen() {
    for (const entry of this.entries) {
      const selected = Boolean(this.chosen) && entry.backend.id === this.chosen.backend.id
        && entry.model.name === this.chosen.model.name;
      entry.el.setAttribute("aria-selected", String(selected));
    }
    if (this.chosen) {
      const name = this.chosen.model.name;
      this.showText(this.chosen.backend.simulated ? `${name} · ${t("simulator")}` : name);
    }
  }

  open() {
    if (this.button.disabled) return;
    this.pop.hidden = false;
    this.button.setAttribute("aria-expanded", "true");
    this.search.value = "";
    this.filter();
    const chosen = this.entries.find((entry) => entry.el.getAttribute("aria-selected") === "true");
    this.activate(chosen || this.visible()[0] || null);
    this.search.focus({ preventScroll: true });
  }

  close(focusButton = true) {
    if (!this.isOpen) return;
    this.pop.hidden = true;
    this.button.setAttribute("aria-expanded", "false");
    this.search.removeAttribute("aria-activedescendant");
    if (focusButton) this.button.focus({ preventScroll: true });
  }

  visible() {
    return this.entries.filter((entry) => !entry.el.hidden && entry.el.getAttribute("aria-disabled") !== "true");
  }

  filter() {
    const words = this.search.value.toLowerCase().split(/\s+/).filter(Boolean);
    let shown = 0;
    for (const entry of this.entries) {
      entry.el.hidden = !words.every((word) => entry.haystack.includes(word));
      if (!entry.el.hidden) shown += 1;
    }
    for (const group of this.list.querySelectorAll(".picker-group")) {
      const entries = group.entries || [];
      // A group with no model (unavailable, empty) shows its reason unless a search hides it.
      group.hidden = entries.length ? entries.every((entry) => entry.el.hidden) : words.length > 0;
    }
    this.empty.hidden = shown > 0 || !words.length;
    if (!this.active || this.active.el.hidden) this.activate(this.visible()[0] || null);
  }

  activate(entry, scroll = true) {
    if (this.active) this.active.el.classList.remove("is-active");
    this.active = entry;
    if (!entry) {
      this.search.removeAttribute("aria-activedescendant");
      return;
    }
    entry.el.classList.add("is-active");
    this.search.setAttribute("aria-activedescendant", entry.el.id);
    if (scroll) entry.el.scrollIntoView({ block: "nearest" });
  }

  onKey(event) {
    if (event.isComposing) return;
    const visible = this.visible();
    const index = this.active ? visible.indexOf(this.active) : -1;
    if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      event.preventDefault();
      if (!visible.length) return;
      const step = event.key === "ArrowDown" ? 1 : -1;
      this.activate(visible[(index + step + visible.length) % visible.length]);
    } else if (event.key === "Home" || event.key === "End") {
      if (!visible.length) return;
      event.preventDefault();
      this.activate(event.key === "Home" ? visible[0] : visible[visible.length - 1]);
    } else if (event.key === "Enter") {
      event.preventDefault();
      if (this.active && !this.active.el.hidden) this.choose(this.active);
    } else if (event.key === "Escape") {
      event.preventDefault();
      event.stopPropagation();
      this.close();
    } else if (event.key === "Tab") {
      this.close(false);
    }
  }

  choose(entry) {
    this.chosen = { backend: entry.backend, model: entry.model };
    this.markChosen();
    this.close();
    this.onChoose(this.chosen);
  }
}
