// The reasoning block's open or folded state. It stays open while the model thinks and after
// the answer starts (as DeepSeek does); one click on its header folds it, and that choice is
// saved for the user on the server (their chat defaults), so it holds after a reload and on
// other devices. New messages open or fold as the user last chose.
import { postJSON } from "./api.js";

export const reasoningPrefs = { expanded: true };

export function setupReasoning(config) {
  reasoningPrefs.expanded = config.reasoning_expanded !== false;
  const thread = document.getElementById("thread");
  thread.addEventListener("click", (event) => {
    const summary = event.target.closest(".thinking-summary");
    if (!summary) return;
    const details = summary.parentElement;
    // The click toggles the <details> after this handler: its state then is the choice.
    setTimeout(() => remember(config, details.open), 0);
  });
}

async function remember(config, expanded) {
  if (reasoningPrefs.expanded === expanded) return;
  reasoningPrefs.expanded = expanded;
  try {
    await postJSON(config.urls.settings, { reasoning_expanded: expanded });
  } catch {
    /* kept for this page; the next click tries again */
  }
}
