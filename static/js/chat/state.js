// What the page knows about the state of things beyond this tab: which chats have an answer
// being written (the sidebar's mark, from conversation.generating frames, any tab or process),
// Undo after deleting a chat, and answers cut off when the connection to the server is lost.
import { getJSON, postJSON } from "./api.js";
import { t } from "./i18n.js";
import { isStreaming, markLost } from "./message.js";
import { toast } from "./ui.js";

// Without a socket for this long while an answer is being written, the answer is shown as
// interrupted (a server that died does not come back in time; a blip reconnects sooner).
const LOST_AFTER = 2000;
const UNDO_KEY = "r1chat:undo";

export function setupState({ socket, thread, sidebar, config }) {
  setupGenerating({ socket, sidebar, config });
  setupUndo({ sidebar, config });
  setupLost({ socket, thread, sidebar });
}

// --- the sidebar's mark -----------------------------------------------------------------------

function setGenerating(sidebar, id, generating) {
  const item = sidebar.find(id);
  if (!item) return;
  item.dataset.generating = String(Boolean(generating));
  const link = item.querySelector(".conv-link");
  if (generating) link.title = t("generating");
  else link.removeAttribute("title");
}

function setupGenerating({ socket, sidebar, config }) {
  for (const item of sidebar.items()) {
    if (item.dataset.generating === "true") setGenerating(sidebar, item.dataset.id, true);
  }
  socket.addEventListener("frame", (event) => {
    const frame = event.detail;
    if (frame.type === "conversation.generating") setGenerating(sidebar, frame.conversation, frame.generating);
  });
  // Back after a disconnection: what started or ended meanwhile.
  socket.addEventListener("open", async (event) => {
    if (!event.detail.reconnect || sidebar.query) return;
    try {
      const page = await getJSON(config.urls.conversations);
      for (const data of page.items) setGenerating(sidebar, data.id, data.generating);
    } catch {
      /* the next frames bring the marks up to date */
    }
  });
}

// --- Undo after a delete ----------------------------------------------------------------------

function setupUndo({ sidebar, config }) {
  const conversationUrl = (id) => config.urls.conversation.replace("00000000-0000-0000-0000-000000000000", id);
  const undoMs = Math.max(3, (config.undo_seconds ?? 10) - 2) * 1000;

  const offer = ({ id, until, wasCurrent }) => {
    const left = until - Date.now();
    if (left <= 0) return;
    const item = document.createElement("div");
    item.className = "toast toast-undo";
    item.setAttribute("role", "status");
    const text = document.createElement("span");
    text.textContent = t("deleted");
    const button = document.createElement("button");
    button.type = "button";
    button.className = "toast-action";
    button.textContent = t("undo");
    item.append(text, button);
    document.getElementById("toasts").append(item);
    const timer = setTimeout(() => item.remove(), left);
    button.addEventListener("click", async () => {
      clearTimeout(timer);
      item.remove();
      sessionStorage.removeItem(UNDO_KEY);
      try {
        const result = await postJSON(`${conversationUrl(id)}restore`);
        if (wasCurrent) {
          window.location.assign(conversationUrl(result.conversation.id));
          return;
        }
        sidebar.upsert(result.conversation); // (the frame to every tab does the same)
        toast(t("restored"));
      } catch {
        toast(t("restore_failed"), { error: true });
      }
    });
  };

  // The chat that was on screen was deleted: this page was left for a new chat, and Undo
  // comes along (sessionStorage: this tab only).
  try {
    const pending = JSON.parse(sessionStorage.getItem(UNDO_KEY) || "null");
    sessionStorage.removeItem(UNDO_KEY);
    if (pending) offer(pending);
  } catch {
    /* storage unavailable: no Undo after leaving the page */
  }

  // Before the request: the frame announcing the delete may move this tab first.
  document.addEventListener("r1chat:deleting", (event) => {
    if (!event.detail.current) return;
    try {
      sessionStorage.setItem(UNDO_KEY, JSON.stringify({ id: event.detail.id, until: Date.now() + undoMs, wasCurrent: true }));
    } catch {
      /* no Undo after leaving the page */
    }
  });
  document.addEventListener("r1chat:delete-failed", () => sessionStorage.removeItem(UNDO_KEY));
  document.addEventListener("r1chat:deleted", (event) => {
    if (!event.detail.current) offer({ id: event.detail.id, until: Date.now() + undoMs, wasCurrent: false });
  });
}

// --- the connection is lost mid-answer --------------------------------------------------------

function setupLost({ socket, thread, sidebar }) {
  let timer = null;
  socket.addEventListener("state", (event) => {
    const { state } = event.detail;
    if (state === "open") {
      clearTimeout(timer);
      timer = null;
      return;
    }
    if (state !== "closed" || timer || !thread.generating || socket.opened === 0) return;
    timer = setTimeout(() => {
      timer = null;
      if (socket.isOpen) return;
      for (const el of thread.messages().filter(isStreaming)) markLost(el, t("connection_lost"));
      if (thread.conversation) setGenerating(sidebar, thread.conversation, false);
      thread.changed();
    }, LOST_AFTER);
  });
}
