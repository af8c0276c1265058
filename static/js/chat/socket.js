// The tab's one WebSocket: reconnects with exponential backoff and reports its state.
const BACKOFF_START = 500;
const BACKOFF_MAX = 30_000;
const CLOSE_UNAUTHORIZED = 4401;
const CLOSE_REVOKED = 4403;

export class ChatSocket extends EventTarget {
  constructor(path) {
    super();
    const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
    this.url = `${scheme}//${window.location.host}${path}`;
    this.ws = null;
    this.delay = BACKOFF_START;
    this.timer = null;
    this.retryAt = 0;
    this.opened = 0; // how many times the socket opened (1 = first connection)
    this.state = "connecting";
    window.addEventListener("online", () => this.reconnectNow());
    document.addEventListener("visibilitychange", () => {
      if (document.visibilityState === "visible" && this.state === "closed") this.reconnectNow();
    });
  }

  connect() {
    clearTimeout(this.timer);
    this.setState("connecting");
    const ws = new WebSocket(this.url);
    this.ws = ws;
    ws.addEventListener("open", () => {
      this.delay = BACKOFF_START;
      this.opened += 1;
      this.setState("open");
      this.dispatchEvent(new CustomEvent("open", { detail: { reconnect: this.opened > 1 } }));
    });
    ws.addEventListener("message", (event) => {
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch {
        return;
      }
      this.dispatchEvent(new CustomEvent("frame", { detail: frame }));
    });
    ws.addEventListener("close", (event) => {
      if (this.ws !== ws) return;
      this.ws = null;
      if (event.code === CLOSE_UNAUTHORIZED || event.code === CLOSE_REVOKED) {
        // Signed out (here or elsewhere): the page itself decides where to go.
        this.setState("closed");
        window.location.reload();
        return;
      }
      this.scheduleReconnect();
    });
  }

  scheduleReconnect() {
    // Full jitter keeps a restarted server from being hit by every tab at once.
    const wait = Math.round(this.delay / 2 + (Math.random() * this.delay) / 2);
    this.delay = Math.min(this.delay * 2, BACKOFF_MAX);
    this.retryAt = Date.now() + wait;
    this.setState("closed");
    this.timer = setTimeout(() => this.connect(), wait);
  }

  reconnectNow() {
    if (this.ws) return;
    clearTimeout(this.timer);
    this.delay = BACKOFF_START;
    this.connect();
  }

  get isOpen() {
    return this.ws?.readyState === WebSocket.OPEN;
  }

  send(frame) {
    if (!this.isOpen) return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }

  setState(state) {
    this.state = state;
    this.dispatchEvent(new CustomEvent("state", { detail: { state, retryAt: this.retryAt } }));
  }
}
