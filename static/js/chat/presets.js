// Saved presets in the settings panel: choose one (its model and settings apply, and the chat
// remembers it), save the current settings as a new one, update, rename or delete it.
import { postJSON } from "./api.js";
import { t } from "./i18n.js";
import { toast } from "./ui.js";

export class Presets {
  constructor({ settings, config }) {
    this.settings = settings;
    this.url = config.urls.presets;
    this.items = [...(config.presets || [])];
    this.select = document.getElementById("set-preset");
    this.actions = document.getElementById("preset-actions");
    this.form = document.getElementById("preset-form");
    this.name = document.getElementById("preset-name");
    this.mode = null; // "new" | "rename" while the name form is open
    this.render();
    this.select.addEventListener("change", () => this.choose(Number(this.select.value) || 0));
    document.getElementById("preset-new").addEventListener("click", () => this.openForm("new"));
    document.getElementById("preset-rename").addEventListener("click", () => this.openForm("rename"));
    document.getElementById("preset-update").addEventListener("click", () => this.update());
    document.getElementById("preset-delete").addEventListener("click", () => this.remove());
    document.getElementById("preset-form-cancel").addEventListener("click", () => this.closeForm());
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.submitForm();
    });
    this.name.addEventListener("keydown", (event) => {
      if (event.key === "Escape") {
        event.preventDefault();
        event.stopPropagation();
        this.closeForm();
      }
    });
  }

  get current() {
    const id = this.settings.state.preset || 0;
    return this.items.find((item) => item.id === id) || null;
  }

  render() {
    const chosen = this.current;
    const options = [new Option(t("preset_none"), "")];
    for (const item of this.items) options.push(new Option(item.name, String(item.id)));
    this.select.replaceChildren(...options);
    this.select.value = chosen ? String(chosen.id) : "";
    this.actions.hidden = !chosen;
  }

  choose(id) {
    const preset = this.items.find((item) => item.id === id);
    this.settings.state.preset = preset ? preset.id : 0;
    if (preset) this.settings.applySettings(preset.settings);
    this.render();
  }

  /** The settings a preset keeps (the model and the values, not the preset itself). */
  values() {
    const { preset: _preset, ...values } = this.settings.current();
    return values;
  }

  openForm(mode) {
    this.mode = mode;
    this.form.hidden = false;
    this.name.value = mode === "rename" ? this.current?.name || "" : "";
    this.name.focus();
    this.name.select();
  }

  closeForm() {
    this.form.hidden = true;
    this.mode = null;
  }

  async submitForm() {
    const name = this.name.value.trim();
    if (!name) return this.name.focus();
    try {
      if (this.mode === "rename" && this.current) {
        const { preset } = await postJSON(`${this.url}/${this.current.id}`, { name });
        this.replace(preset);
        toast(t("preset_renamed"));
      } else {
        const { preset } = await postJSON(this.url, { name, settings: this.values() });
        this.items.push(preset);
        this.items.sort((a, b) => a.name.localeCompare(b.name));
        this.settings.state.preset = preset.id;
        toast(t("preset_saved"));
      }
    } catch (error) {
      toast(error.data?.detail || t("request_failed"), { error: true });
      return;
    }
    this.closeForm();
    this.render();
  }

  async update() {
    const preset = this.current;
    if (!preset) return;
    try {
      const data = await postJSON(`${this.url}/${preset.id}`, { settings: this.values() });
      this.replace(data.preset);
      toast(t("preset_saved"));
    } catch (error) {
      toast(error.data?.detail || t("request_failed"), { error: true });
    }
  }

  async remove() {
    const preset = this.current;
    if (!preset) return;
    try {
      await postJSON(`${this.url}/${preset.id}/delete`);
    } catch (error) {
      toast(error.data?.detail || t("request_failed"), { error: true });
      return;
    }
    this.items = this.items.filter((item) => item.id !== preset.id);
    this.settings.state.preset = 0;
    this.render();
    toast(t("preset_deleted"));
  }

  replace(preset) {
    this.items = this.items.map((item) => (item.id === preset.id ? preset : item));
  }
}
