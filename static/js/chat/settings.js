// The model picker, the Deep Think toggle and the settings panel. The chosen settings travel
// with every send/regenerate/edit frame (the server stores them on the conversation) and can
// be saved as the user's defaults.
import { getJSON, postJSON } from "./api.js";
import { formatNumber, t } from "./i18n.js";
import { toast } from "./ui.js";

const MAX_TOKENS_UNKNOWN = 32768;
const MAX_TOKENS_FLOOR = 256;

export class Settings {
  constructor(config) {
    this.config = config;
    this.state = { ...config.settings };
    this.options = new Map(); // option value → { backend, model }
    this.picker = document.getElementById("model-picker");
    this.deepThink = document.getElementById("deep-think");
    this.panel = document.getElementById("settings-panel");
    this.button = document.getElementById("settings-btn");
    this.banner = document.getElementById("sim-banner");
    this.temperature = document.getElementById("set-temperature");
    this.maxTokens = document.getElementById("set-max-tokens");
    this.enhanced = document.getElementById("set-enhanced");
    this.systemPrompt = document.getElementById("set-system-prompt");
    this.status = document.getElementById("settings-status");
    this.fromState();
    this.wire();
    this.loadModels();
  }

  wire() {
    document.getElementById("sim-banner-close").addEventListener("click", () => {
      this.banner.hidden = true;
      try {
        sessionStorage.setItem("r1chat.simBanner", "hidden");
      } catch {
        /* storage blocked: hidden for this page only */
      }
    });
    this.button.addEventListener("click", () => this.toggle());
    document.getElementById("settings-close").addEventListener("click", () => this.toggle(false));
    document.getElementById("settings-save-defaults").addEventListener("click", () => this.saveDefaults());
    this.panel.addEventListener("keydown", (event) => {
      if (event.key === "Escape") {
        event.preventDefault();
        this.toggle(false);
        this.button.focus();
      }
    });
    document.addEventListener("pointerdown", (event) => {
      if (this.panel.hidden || this.panel.contains(event.target) || this.button.contains(event.target)) return;
      this.toggle(false);
    });
    this.deepThink.addEventListener("click", () => {
      this.state.deep_think = this.deepThink.getAttribute("aria-pressed") !== "true";
      this.applyModel();
    });
    this.picker.addEventListener("change", () => {
      const choice = this.options.get(this.picker.value);
      if (!choice) return;
      this.state.backend = choice.backend.id;
      this.state.model = choice.model.name;
      this.applyModel();
    });
    this.temperature.addEventListener("input", () => {
      this.state.temperature = Number(this.temperature.value);
      this.showValues();
    });
    this.maxTokens.addEventListener("input", () => {
      this.state.max_tokens = Number(this.maxTokens.value);
      this.showValues();
    });
    this.enhanced.addEventListener("change", () => {
      this.state.enhanced_reasoning = this.enhanced.checked;
    });
    this.systemPrompt.addEventListener("input", () => {
      this.state.system_prompt = this.systemPrompt.value;
    });
  }

  bannerDismissed() {
    try {
      return sessionStorage.getItem("r1chat.simBanner") === "hidden";
    } catch {
      return false;
    }
  }

  toggle(open = this.panel.hidden) {
    this.panel.hidden = !open;
    this.button.setAttribute("aria-expanded", String(open));
    if (open) this.temperature.focus();
  }

  fromState() {
    this.temperature.value = String(this.state.temperature ?? 0.6);
    this.maxTokens.value = String(this.state.max_tokens ?? 2048);
    this.enhanced.checked = this.state.enhanced_reasoning !== false;
    this.systemPrompt.value = this.state.system_prompt || "";
    this.deepThink.setAttribute("aria-pressed", String(this.state.deep_think !== false));
    this.showValues();
  }

  showValues() {
    document.getElementById("out-temperature").value = Number(this.temperature.value).toFixed(2);
    document.getElementById("out-max-tokens").value = formatNumber(Number(this.maxTokens.value));
  }

  // --- models -----------------------------------------------------------------------------

  async loadModels() {
    let data;
    try {
      data = await getJSON(this.config.urls.models);
    } catch {
      this.picker.replaceChildren(new Option(t("models_failed"), ""));
      toast(t("models_failed"), { error: true });
      return;
    }
    this.fillPicker(data.backends || []);
  }

  fillPicker(backends) {
    this.options.clear();
    const groups = [];
    let fallback = null;
    let chosen = null;
    for (const backend of backends) {
      const group = document.createElement("optgroup");
      const name = backend.simulated ? t("simulator") : backend.name;
      group.label = backend.available ? name : `${name} (${t("unavailable")}: ${backend.reason || ""})`;
      if (!backend.models.length) {
        const option = new Option(backend.available ? t("no_models") : backend.reason || t("unavailable"), "");
        option.disabled = true;
        group.append(option);
      }
      backend.models.forEach((model, index) => {
        const value = `${backend.id}:${index}`;
        const option = new Option(backend.simulated ? `${model.name} · ${t("simulator")}` : model.name, value);
        option.disabled = !backend.available;
        if (!backend.available && backend.reason) option.title = backend.reason;
        this.options.set(value, { backend, model });
        group.append(option);
        if (!backend.available) return;
        if (backend.id === this.state.backend && model.name === this.state.model) chosen = value;
        if (!fallback || (backend.default_model === model.name && !fallback.isDefault)) {
          fallback = { value, isDefault: backend.default_model === model.name };
        }
      });
      groups.push(group);
    }
    this.picker.replaceChildren(...groups);
    const value = chosen || fallback?.value;
    if (value) {
      this.picker.value = value;
      this.picker.disabled = false;
      const choice = this.options.get(value);
      this.state.backend = choice.backend.id;
      this.state.model = choice.model.name;
    } else {
      this.picker.prepend(new Option(t("no_models"), "", true, true));
      this.picker.disabled = true;
    }
    this.applyModel();
  }

  selected() {
    return this.options.get(this.picker.value) || null;
  }

  /** Show what the chosen model allows: Deep Think, effort levels, temperature, length. */
  applyModel() {
    const choice = this.selected();
    const info = choice?.model;
    const thinking = info?.thinking || "on_off";
    const toggle = this.deepThink;
    toggle.classList.toggle("is-locked", thinking === "always");
    if (thinking === "always") {
      toggle.disabled = true;
      toggle.setAttribute("aria-pressed", "true");
      toggle.title = t("always_thinks");
    } else if (thinking === "never") {
      toggle.disabled = true;
      toggle.setAttribute("aria-pressed", "false");
      toggle.title = t("cannot_think");
    } else {
      toggle.disabled = false;
      toggle.setAttribute("aria-pressed", String(this.state.deep_think !== false));
      toggle.title = t("deep_think_hint");
    }
    document.getElementById("enhanced-row").hidden = !(info?.effort_levels?.length);
    const thinkingOn = toggle.getAttribute("aria-pressed") === "true";
    const ignored = Boolean(info?.ignores_temperature_when_thinking) && thinkingOn;
    document.getElementById("temperature-ignored").hidden = !ignored;
    this.temperature.disabled = ignored;
    const limit = info?.max_output_tokens || MAX_TOKENS_UNKNOWN;
    this.maxTokens.max = String(Math.max(MAX_TOKENS_FLOOR, limit));
    this.maxTokens.title = info?.max_output_tokens ? t("max_tokens_model", { count: formatNumber(limit) }) : "";
    if (Number(this.maxTokens.value) > limit) {
      this.maxTokens.value = String(limit);
      this.state.max_tokens = limit;
    }
    this.showValues();
    this.banner.hidden = !choice?.backend.simulated || this.bannerDismissed();
  }

  /** The settings for the next send, regenerate or edit frame. */
  current() {
    const choice = this.selected();
    const thinking = choice?.model.thinking;
    const settings = {
      deep_think:
        thinking === "always" ? true : thinking === "never" ? false : this.state.deep_think !== false,
      enhanced_reasoning: this.state.enhanced_reasoning !== false,
      temperature: Math.round(Number(this.temperature.value) * 100) / 100,
      max_tokens: Math.round(Number(this.maxTokens.value)),
      system_prompt: this.systemPrompt.value.slice(0, this.config.max_system_prompt_chars),
    };
    if (choice) {
      settings.backend = choice.backend.id;
      settings.model = choice.model.name;
    }
    return settings;
  }

  async saveDefaults() {
    try {
      const result = await postJSON(this.config.urls.settings, this.current());
      this.status.textContent = result.saved ? t("saved_defaults") : t("saved_local");
    } catch (error) {
      this.status.textContent = error.data?.detail || t("request_failed");
    }
  }
}
