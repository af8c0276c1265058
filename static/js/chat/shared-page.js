// The shared page (/s/<token>/): copy the link, and the copy buttons of code blocks.
import "../codeblocks.js";
import { copyText } from "./ui.js";

document.getElementById("shared-copy")?.addEventListener("click", (event) => {
  copyText(event.currentTarget.dataset.url);
});

document.getElementById("shared-thread")?.addEventListener("click", (event) => {
  const button = event.target.closest("button.copy-code[data-copy]");
  if (!button) return;
  const code = button.closest(".code-block")?.querySelector("pre code");
  if (code) copyText(code.textContent, button);
});
