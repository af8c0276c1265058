// Light, dark or the system's choice: saved on the account when it has a theme field, and in
// this browser either way (so the choice shows before the page asks the server).
import { postJSON } from "./api.js";

const KEY = "r1chat.theme";

export function setupTheme(config) {
  const root = document.documentElement;
  const buttons = [...document.querySelectorAll("[data-theme-value]")];
  const show = (theme) => {
    for (const button of buttons) {
      button.setAttribute("aria-checked", String(button.dataset.themeValue === theme));
    }
  };
  show(root.dataset.theme || "system");
  for (const button of buttons) {
    button.addEventListener("click", async () => {
      const theme = button.dataset.themeValue;
      root.dataset.theme = theme;
      show(theme);
      try {
        localStorage.setItem(KEY, theme);
      } catch {
        /* storage blocked */
      }
      if (config.theme_saved) {
        try {
          await postJSON(config.urls.theme, { theme });
        } catch {
          /* kept for this page; the next load shows the saved one */
        }
      }
    });
  }
}
