// The conversation on screen: its messages, the frames that change them, and the commands
// (send, stop, regenerate, edit, switch) that go out on the socket.
import { getJSON } from "./api.js";
import { Feedback } from "./feedback.js";
import { t } from "./i18n.js";
import {
  applyDelta,
  applyDone,
  applySnapshot,
  createMessage,
  fillAssistant,
  hydrate,
  isStreaming,
  markCreated,
  messageText,
  versionTarget,
} from "./message.js";
import { copyText, toast } from "./ui.js";

const RECONCILE_AFTER = 3000;
const STICKY_DISTANCE = 80;

export class Thread extends EventTarget {
  constructor({ socket, config, settings }) {
    super();
    this.socket = socket;
    this.config = config;
    this.settings = settings;
    this.conversation = config.conversation;
    this.feedback = new Feedback(config); // before any message is filled: it holds the thumbs
    this.list = document.getElementById("thread");
    this.scroller = document.getElementById("thread-scroll");
    this.empty = document.getElementById("empty-state");
    this.toBottom = document.getElementById("to-bottom");
    this.pendingSends = new Map(); // client_id → the text, until the server takes it
    this.pendingFiles = new Map(); // client_id → the attached files' chips
    this.reconcileTimer = null;
    this.sticky = true;
    this.scrollQueued = false;
    for (const el of this.list.children) hydrate(el);
    this.list.addEventListener("click", (event) => this.onClick(event));
    this.scroller.addEventListener("scroll", () => this.onScroll(), { passive: true });
    this.toBottom.addEventListener("click", () => {
      this.sticky = true;
      this.scrollToBottom(true);
    });
    this.scrollToBottom();
  }

  // --- state ------------------------------------------------------------------------------

  messages() {
    return [...this.list.children];
  }

  find(id) {
    return id ? this.list.querySelector(`.msg[data-id="${CSS.escape(id)}"]`) : null;
  }

  streaming() {
    return this.messages().filter(isStreaming);
  }

  get generating() {
    return this.streaming().length > 0;
  }

  changed() {
    this.empty.hidden = this.list.childElementCount > 0;
    this.dispatchEvent(new CustomEvent("change"));
    this.queueScroll();
  }

  // --- the socket -------------------------------------------------------------------------

  async onOpen({ reconnect }) {
    if (reconnect && this.conversation) {
      // Whatever happened while we were away: the stored thread, then live frames.
      try {
        const data = await getJSON(this.threadUrl());
        this.render(data.messages);
      } catch {
        /* the snapshot and the reconcile below still bring us up to date */
      }
    }
    this.subscribe();
  }

  subscribe() {
    this.socket.send({ type: "subscribe", conversation: this.conversation });
    clearTimeout(this.reconcileTimer);
    if (this.conversation && this.generating) {
      this.reconcileTimer = setTimeout(() => this.reconcile(), RECONCILE_AFTER);
    }
  }

  threadUrl() {
    return `${this.config.urls.conversations}/${this.conversation}/thread`;
  }

  /** A generation that ended before we subscribed sends no frame: ask the server. */
  async reconcile() {
    if (!this.conversation || !this.generating) return;
    let data;
    try {
      data = await getJSON(this.threadUrl());
    } catch {
      return;
    }
    for (const message of data.messages) {
      const el = this.find(message.id);
      if (el && isStreaming(el) && message.status !== "streaming") {
        fillAssistant(el, message);
      }
    }
    this.changed();
  }

  onFrame(frame) {
    const handler = FRAME_HANDLERS[frame.type];
    if (handler) handler.call(this, frame);
  }

  // --- frames -----------------------------------------------------------------------------

  mine(frame) {
    return frame.conversation === this.conversation;
  }

  onMessageCreated(frame) {
    if (!this.mine(frame)) return;
    const data = frame.message;
    const existing = this.find(data.id);
    if (existing) return;
    // A new message follows its parent: anything after the parent was another version.
    const parent = this.find(data.parent);
    if (parent) {
      while (parent.nextElementSibling) parent.nextElementSibling.remove();
    } else if (!data.parent) {
      this.list.replaceChildren();
    }
    const el = createMessage(data);
    this.list.append(el);
    if (data.role === "assistant" && isStreaming(el)) markCreated(el, data);
    if (data.role === "user") this.sticky = true;
    this.changed();
  }

  onMessageUpdated(frame) {
    if (!this.mine(frame)) return;
    const el = this.find(frame.message.id);
    if (!el) return;
    if (frame.message.role === "assistant") fillAssistant(el, frame.message);
    this.changed();
  }

  onThread(frame) {
    if (!this.mine(frame)) return;
    this.render(frame.messages);
  }

  onSnapshot(frame) {
    const el = this.find(frame.message);
    if (!el) return;
    applySnapshot(el, frame);
    this.changed();
  }

  /** "Continue generating" began: the message streams again from what it shows. */
  onContinued(frame) {
    const el = this.find(frame.message);
    if (!el) return;
    applySnapshot(el, frame);
    this.changed();
  }

  onDelta(frame) {
    const el = this.find(frame.message);
    if (!el) return;
    const applied = applyDelta(el, frame);
    if (applied === "gap") this.subscribe(); // frames were lost: a snapshot brings it back
    else if (applied) this.queueScroll();
  }

  onDone(frame) {
    const el = this.find(frame.message);
    if (!el) return;
    applyDone(el, frame);
    this.changed();
  }

  onError(frame) {
    if (frame.code === "duplicate") return;
    const text = frame.ref ? this.pendingSends.get(frame.ref) : null;
    if (frame.ref) this.pendingSends.delete(frame.ref);
    if (text != null) this.dispatchEvent(new CustomEvent("restore", { detail: text }));
    const files = frame.ref ? this.pendingFiles.get(frame.ref) : null;
    if (frame.ref) this.pendingFiles.delete(frame.ref);
    if (files?.length) this.dispatchEvent(new CustomEvent("restore-files", { detail: files }));
    toast(frame.detail || t("request_failed"), { error: true });
  }

  /** The whole visible thread, replacing what is shown. */
  render(messages) {
    const elements = messages.map((data) => {
      const el = createMessage(data);
      if (data.role === "assistant" && isStreaming(el)) markCreated(el, data);
      return el;
    });
    this.list.replaceChildren(...elements);
    this.changed();
  }

  // --- commands ---------------------------------------------------------------------------

  send(content, files = []) {
    const clientId = crypto.randomUUID ? crypto.randomUUID() : `${Date.now()}-${Math.random()}`;
    const frame = {
      type: "send",
      conversation: this.conversation,
      content,
      client_id: clientId,
      settings: this.settings.current(),
    };
    if (files.length) frame.attachments = files.map((file) => file.id);
    if (!this.socket.send(frame)) {
      toast(t("not_connected"), { error: true });
      return false;
    }
    this.pendingSends.set(clientId, content);
    if (files.length) this.pendingFiles.set(clientId, files);
    this.sticky = true;
    return true;
  }

  /** The server took our send (conversation.created carries our client_id). */
  acknowledge(clientId) {
    this.pendingFiles.delete(clientId);
    return this.pendingSends.delete(clientId);
  }

  stop() {
    for (const el of this.streaming()) this.socket.send({ type: "stop", message: el.dataset.id });
  }

  regenerate(el) {
    this.sticky = true;
    if (!this.socket.send({ type: "regenerate", message: el.dataset.id, settings: this.settings.current() })) {
      toast(t("not_connected"), { error: true });
    }
  }

  continueAnswer(el) {
    this.sticky = true;
    if (!this.socket.send({ type: "continue", message: el.dataset.id })) toast(t("not_connected"), { error: true });
  }

  switchTo(id) {
    if (id && !this.socket.send({ type: "switch", message: id })) toast(t("not_connected"), { error: true });
  }

  startEdit(el) {
    if (el.querySelector(".msg-edit")) return;
    const bubble = el.querySelector(".user-bubble");
    const box = document.createElement("div");
    box.className = "msg-edit";
    const area = document.createElement("textarea");
    area.value = messageText(el);
    area.setAttribute("aria-label", t("edit_placeholder"));
    const actions = document.createElement("div");
    actions.className = "msg-edit-actions";
    const cancel = document.createElement("button");
    cancel.type = "button";
    cancel.className = "btn";
    cancel.textContent = t("cancel");
    const save = document.createElement("button");
    save.type = "button";
    save.className = "btn btn-primary";
    save.textContent = t("save");
    actions.append(cancel, save);
    box.append(area, actions);
    bubble.hidden = true;
    el.querySelector(".msg-actions").hidden = true;
    bubble.after(box);
    const close = () => {
      box.remove();
      bubble.hidden = !messageText(el); // (a question of files only has no bubble)
      el.querySelector(".msg-actions").hidden = false;
    };
    const submit = () => {
      const content = area.value;
      if (!content.trim() || this.generating) return;
      if (content.length > this.config.max_chars) {
        toast(t("too_long", { limit: this.config.max_chars.toLocaleString() }), { error: true });
        return;
      }
      const frame = { type: "edit", message: el.dataset.id, content, settings: this.settings.current() };
      if (this.socket.send(frame)) {
        this.sticky = true;
        close();
      } else {
        toast(t("not_connected"), { error: true });
      }
    };
    cancel.addEventListener("click", close);
    save.addEventListener("click", submit);
    area.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        submit();
      } else if (event.key === "Escape") {
        event.stopPropagation();
        close();
      }
    });
    const grow = () => {
      area.style.height = "auto";
      area.style.height = `${area.scrollHeight}px`;
    };
    area.addEventListener("input", grow);
    area.focus();
    area.setSelectionRange(area.value.length, area.value.length);
    grow();
  }

  onClick(event) {
    const target = event.target.closest("button, .msg-info");
    if (!target) return;
    const el = target.closest(".msg");
    if (target.matches("button.copy-code[data-copy]")) {
      const code = target.closest(".code-block")?.querySelector("pre code");
      if (code) copyText(code.textContent, target);
      return;
    }
    if (!el) return;
    if (target.matches(".act-copy")) copyText(messageText(el), target);
    else if (target.matches(".act-regenerate, .retry-btn")) {
      if (this.generating) toast(t("stop"));
      else this.regenerate(el);
    } else if (target.matches(".continue-btn")) {
      if (this.generating) toast(t("stop"));
      else this.continueAnswer(el);
    } else if (target.matches(".act-edit")) this.startEdit(el);
    else if (target.matches(".act-rate")) this.feedback.click(el, target);
    else if (target.matches(".version-prev")) this.switchTo(versionTarget(el, -1));
    else if (target.matches(".version-next")) this.switchTo(versionTarget(el, 1));
  }

  // --- scrolling --------------------------------------------------------------------------

  onScroll() {
    const { scrollTop, scrollHeight, clientHeight } = this.scroller;
    const distance = scrollHeight - scrollTop - clientHeight;
    this.sticky = distance < STICKY_DISTANCE;
    this.toBottom.hidden = distance < STICKY_DISTANCE * 3;
  }

  queueScroll() {
    if (this.scrollQueued) return;
    this.scrollQueued = true;
    requestAnimationFrame(() => {
      this.scrollQueued = false;
      if (this.sticky) this.scrollToBottom();
    });
  }

  scrollToBottom(smooth = false) {
    this.scroller.scrollTo({ top: this.scroller.scrollHeight, behavior: smooth ? "smooth" : "instant" });
  }
}

const FRAME_HANDLERS = {
  "message.created": Thread.prototype.onMessageCreated,
  "message.updated": Thread.prototype.onMessageUpdated,
  thread: Thread.prototype.onThread,
  "generation.snapshot": Thread.prototype.onSnapshot,
  "generation.continued": Thread.prototype.onContinued,
  "generation.delta": Thread.prototype.onDelta,
  "generation.done": Thread.prototype.onDone,
  error: Thread.prototype.onError,
};
