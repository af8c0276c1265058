// The chat page: wires the socket, the thread, the sidebar, the composer and the settings.
import "../codeblocks.js";
import { AttachmentTray } from "./attachments.js";
import { Composer } from "./composer.js";
import { t } from "./i18n.js";
import { setupLongText } from "./longtext.js";
import { setupSearch } from "./search.js";
import { Settings } from "./settings.js";
import { setupShare } from "./share.js";
import { Sidebar } from "./sidebar.js";
import { ChatSocket } from "./socket.js";
import { setupShortcuts } from "./shortcuts.js";
import { setupState } from "./state.js";
import { setupTheme } from "./theme.js";
import { Thread } from "./thread.js";
import { closePopover, popoverIsOpen, showPopover } from "./ui.js";

const config = JSON.parse(document.getElementById("chat-config").textContent);

// "Today" in the sidebar is the user's today: the server reads the zone from this cookie.
try {
  const zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  if (zone) document.cookie = `tz=${encodeURIComponent(zone)}; path=/; max-age=31536000; samesite=lax`;
} catch {
  /* no Intl time zone: the server's default */
}

const socket = new ChatSocket(config.urls.ws);
const settings = new Settings(config);
const thread = new Thread({ socket, config, settings });
const sidebar = new Sidebar({
  config,
  onCurrentDeleted: () => window.location.assign(config.urls.home),
});
const tray = new AttachmentTray({ config, settings, thread });
new Composer({ thread, socket, maxChars: config.max_chars, tray });
setupTheme(config);
setupShare(config);
setupShortcuts({ thread, config });
setupLongText({ config });
setupState({ socket, thread, sidebar, config });
setupSearch({ config, thread });

const title = document.getElementById("conv-title");
const exportButton = document.getElementById("export-btn");

function showConversation(id, text) {
  const url = config.urls.conversation.replace("00000000-0000-0000-0000-000000000000", id);
  thread.conversation = id;
  config.conversation = id;
  sidebar.setCurrent(id);
  setTitle(text);
  document.getElementById("export-md").href = `${url}export.md`;
  document.getElementById("export-json").href = `${url}export.json`;
  exportButton.hidden = false;
  document.dispatchEvent(new CustomEvent("r1chat:conversation-shown", { detail: { id } }));
  if (window.location.pathname !== url) window.history.pushState({ conversation: id }, "", url);
}

function setTitle(text) {
  title.textContent = text || t("new_chat");
  document.title = `${text || t("new_chat")} · r1chat`;
}

// --- frames ---------------------------------------------------------------------------------

socket.addEventListener("frame", (event) => {
  const frame = event.detail;
  switch (frame.type) {
    case "conversation.created": {
      const conversation = frame.conversation;
      sidebar.upsert(conversation);
      if (frame.client_id && thread.acknowledge(frame.client_id) && !thread.conversation) {
        showConversation(conversation.id, conversation.title);
      }
      break;
    }
    case "conversation.updated": {
      const conversation = frame.conversation;
      if (frame.deleted) {
        sidebar.remove(conversation.id);
        if (conversation.id === thread.conversation) window.location.assign(config.urls.home);
        break;
      }
      sidebar.upsert(conversation);
      if (conversation.id === thread.conversation && conversation.title != null) setTitle(conversation.title);
      break;
    }
    case "conversation.deleted":
      if (frame.conversation === thread.conversation) window.location.assign(config.urls.home);
      break;
    default:
      thread.onFrame(frame);
  }
});

document.addEventListener("r1chat:renamed", (event) => {
  if (event.detail.id === thread.conversation) setTitle(event.detail.title);
});

// --- connection state -------------------------------------------------------------------------

const conn = document.getElementById("conn");
const connLabel = conn.querySelector(".conn-label");
let countdown = null;
socket.addEventListener("state", (event) => {
  const { state, retryAt } = event.detail;
  conn.dataset.state = state;
  clearInterval(countdown);
  if (state === "open") connLabel.textContent = t("connected");
  else if (state === "connecting") connLabel.textContent = t("connecting");
  else {
    const tick = () => {
      const seconds = Math.max(0, Math.ceil((retryAt - Date.now()) / 1000));
      connLabel.textContent = navigator.onLine === false ? t("offline") : t("reconnecting", { seconds });
    };
    tick();
    countdown = setInterval(tick, 1000);
  }
});
conn.addEventListener("click", () => socket.reconnectNow());
socket.addEventListener("open", (event) => thread.onOpen(event.detail));
window.addEventListener("popstate", () => window.location.reload());

// --- menus ----------------------------------------------------------------------------------

function menu(buttonId, popoverId, options) {
  const button = document.getElementById(buttonId);
  const popover = document.getElementById(popoverId);
  button.addEventListener("click", () => {
    if (popoverIsOpen(popover)) closePopover();
    else showPopover(popover, button, options);
  });
}
menu("user-btn", "user-menu", { above: true });
menu("export-btn", "export-menu", { align: "end" });
document.getElementById("export-menu").addEventListener("click", () => closePopover());
document.getElementById("language-select").addEventListener("change", (event) => {
  event.target.form.submit();
});

socket.connect();
// For tests and debugging: the page's parts, read-only by convention.
window.r1chat = { socket, thread, sidebar, settings };
