// Share links from the chat page: the header's Share button and the sidebar menu's "Share" open
// a dialog (include the reasoning or not), which asks the server for a link to a snapshot of the
// thread as it is now, then shows it with a copy button.
import { getJSON, postJSON } from "./api.js";
import { t } from "./i18n.js";
import { copyText } from "./ui.js";

const ZERO = "00000000-0000-0000-0000-000000000000";

export function setupShare(config) {
  const dialog = document.getElementById("share-dialog");
  if (!dialog) return;
  const button = document.getElementById("share-btn");
  const choose = document.getElementById("share-choose");
  const done = document.getElementById("share-done");
  const reasoning = document.getElementById("share-reasoning");
  const error = document.getElementById("share-error");
  const existing = document.getElementById("share-existing");
  const create = document.getElementById("share-create");
  const urlInput = document.getElementById("share-url");
  const copy = document.getElementById("share-copy");
  const copyLabel = copy.textContent;
  let conversation = null;

  function open(id, title) {
    conversation = id;
    document.getElementById("share-subject").textContent = title || t("new_chat");
    reasoning.checked = false; // off unless chosen, every time
    error.hidden = true;
    choose.hidden = false;
    done.hidden = true;
    create.disabled = false;
    existing.hidden = true;
    dialog.showModal();
    create.focus();
    showExisting(id);
  }

  /** "This chat already has N shared links", when it has. */
  async function showExisting(id) {
    let links = [];
    try {
      links = (await getJSON(dialog.dataset.linksUrl.replace(ZERO, id))).links;
    } catch {
      return; // only a hint: the dialog works without it
    }
    if (id !== conversation || !links.length || !done.hidden) return;
    const text = links.length === 1 ? existing.dataset.one : existing.dataset.many;
    existing.textContent = text.replace("%(count)s", String(links.length));
    existing.hidden = false;
  }

  async function makeLink() {
    if (!conversation) return;
    create.disabled = true;
    error.hidden = true;
    try {
      const data = await postJSON(dialog.dataset.url.replace(ZERO, conversation), {
        include_reasoning: reasoning.checked,
      });
      urlInput.value = data.link.url;
      document.getElementById("share-open").href = data.link.url;
      choose.hidden = true;
      done.hidden = false;
      urlInput.focus();
      urlInput.select();
    } catch (err) {
      error.textContent = err.data?.detail || t("request_failed");
      error.hidden = false;
      create.disabled = false;
    }
  }

  button?.addEventListener("click", () => {
    open(config.conversation, document.getElementById("conv-title").textContent);
  });
  document.addEventListener("r1chat:conversation-action", (event) => {
    if (event.detail.action === "share") open(event.detail.id, event.detail.title);
  });
  document.addEventListener("r1chat:conversation-shown", () => {
    if (button) button.hidden = false;
  });
  create.addEventListener("click", makeLink);
  copy.addEventListener("click", async () => {
    // (A toast would sit under the modal dialog: the button says it instead.)
    if (await copyText(urlInput.value, copy)) {
      copy.textContent = copy.dataset.done;
      setTimeout(() => {
        copy.textContent = copyLabel;
      }, 1500);
    }
  });
}
