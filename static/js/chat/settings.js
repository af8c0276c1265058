// The model picker, the Deep Think toggle, the settings panel and the saved presets. The
// chosen settings travel with every send/regenerate/edit frame (the server stores them on the
// conversation, with the preset they came from) and can be saved as the user's defaults.
import { getJSON, postJSON } from "./api.js";
import { formatNumber, t } from "./i18n.js";
import { ModelPicker } from "./picker.js";
import { Presets } from "./presets.js";
import { setupReasoning } from "./reasoning.js";
import { toast } from "./ui.js";

// The slider's top when the backend reports no context length for the model.
const MAX_TOKENS_UNKNOWN = 32768;
const MAX_TOKENS_FLOOR = 256;

export class Settings {
  constructor(config) {
    this.config = config;
    this.state = { ...config.settings };
    this.choice = null; // { backend, model } from /api/models
    this.backends = [];
    setupReasoning(config);
    this.picker = new ModelPicker({
      root: document.getElementById("model-picker"),
      onChoose: (choice) => this.chooseModel(choice),
    });
    this.deepThink = document.getElementById("deep-think");
    this.panel = document.getElementById("settings-panel");
    this.button = document.getElementById("settings-btn");
    this.banner = document.getElementById("sim-banner");
    this.temperature = document.getElementById("set-temperature");
    this.maxTokens = document.getElementById("set-max-tokens");
    this.enhanced = document.getElementById("set-enhanced");
    this.systemPrompt = document.getElementById("set-system-prompt");
    this.status = document.getElementById("settings-status");
    this.maxTokensHint = document.getElementById("max-tokens-hint");
    this.presets = new Presets({ settings: this, config });
    this.fromState();
    this.wire();
    this.loadModels();
  }

  chooseModel(choice) {
    this.choice = choice;
    this.state.backend = choice.backend.id;
    this.state.model = choice.model.name;
    this.applyModel();
  }

  /** Apply saved settings (a preset): the model when it is offered, and every value. */
  applySettings(values) {
    Object.assign(this.state, values);
    this.fromState();
    const found = this.findChoice(values.backend, values.model);
    if (found) {
      this.choice = found;
      this.picker.select(found);
    }
    this.applyModel();
  }

  findChoice(backendId, modelName) {
    for (const backend of this.backends) {
      if (!backend.available || (backendId != null && backend.id !== backendId)) continue;
      const model = backend.models.find((item) => item.name === modelName);
      if (model) return { backend, model };
    }
    return null;
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
      this.picker.showText(t("models_failed"));
      toast(t("models_failed"), { error: true });
      return;
    }
    this.fillPicker(data.backends || []);
  }

  fillPicker(backends) {
    this.backends = backends;
    this.picker.fill(backends);
    let fallback = null;
    for (const backend of backends) {
      if (!backend.available) continue;
      for (const model of backend.models) {
        if (!fallback || (backend.default_model === model.name && !fallback.isDefault)) {
          fallback = { choice: { backend, model }, isDefault: backend.default_model === model.name };
        }
      }
    }
    const choice = this.findChoice(this.state.backend, this.state.model) || fallback?.choice || null;
    this.choice = choice;
    if (choice) {
      this.picker.select(choice);
      this.picker.setDisabled(false);
      this.state.backend = choice.backend.id;
      this.state.model = choice.model.name;
    } else {
      this.picker.showText(t("no_models"));
      this.picker.setDisabled(!backends.length);
    }
    this.applyModel();
  }

  selected() {
    return this.choice;
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
    // The range reaches the model's context (or output) limit where the backend reports it.
    const limit = info?.context_length || info?.max_output_tokens || MAX_TOKENS_UNKNOWN;
    const top = Math.max(MAX_TOKENS_FLOOR, Math.min(limit, info?.max_output_tokens || limit));
    this.maxTokens.max = String(top);
    this.maxTokens.title = info?.max_output_tokens ? t("max_tokens_model", { count: formatNumber(top) }) : "";
    const wanted = Number(this.state.max_tokens ?? 2048);
    this.maxTokens.value = String(Math.min(wanted, top));
    if (wanted > top) this.state.max_tokens = top;
    // Where the model thinks, its limit counts the reasoning too: the request adds room for it.
    const allowance = this.config.reasoning_allowance || 0;
    this.maxTokensHint.textContent = thinkingOn && allowance
      ? t("max_tokens_reasoning", { extra: formatNumber(allowance) })
      : t("max_tokens_plain");
    this.maxTokensHint.dataset.counts = thinkingOn ? "reasoning" : "answer";
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
      preset: this.state.preset || 0,
    };
    if (choice) {
      settings.backend = choice.backend.id;
      settings.model = choice.model.name;
    }
    return settings;
  }

  async saveDefaults() {
    try {
      const { preset: _preset, ...values } = this.current();
      const result = await postJSON(this.config.urls.settings, values);
      this.status.textContent = result.saved ? t("saved_defaults") : t("saved_local");
    } catch (error) {
      this.status.textContent = error.data?.detail || t("request_failed");
    }
  }
}
