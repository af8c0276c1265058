// Thumbs up and down on answers (POST review:feedback). Clicking the pressed thumb again removes
// it; a thumbs down first asks for an optional reason in a small form under the answer, and is
// stored only when that form is sent (Cancel changes nothing).
import { postJSON } from "./api.js";
import { t } from "./i18n.js";
import { toast } from "./ui.js";

const MAX_REASON = 1000;
const ZERO = "00000000-0000-0000-0000-000000000000";

// message id → "up" | "down", as the server last confirmed it: every version of the
// conversation from the page, then what this tab sets. Messages that arrive live start unrated.
const ratings = new Map();
const busy = new Set();

/** Show the user's thumbs on an assistant element (aria-pressed on the two buttons). */
export function showRating(el) {
  const rating = ratings.get(el.dataset.id) || "";
  for (const button of el.querySelectorAll(".act-rate")) {
    button.setAttribute("aria-pressed", String(button.dataset.rating === rating));
  }
}

export class Feedback {
  constructor(config) {
    this.url = config.urls.feedback;
    for (const [id, rating] of Object.entries(config.feedback || {})) {
      if (rating) ratings.set(id, rating);
    }
  }

  /** A click on a thumb of the answer `el`. */
  click(el, button) {
    const id = el.dataset.id;
    if (!id || busy.has(id)) return;
    const wanted = button.dataset.rating;
    const open = el.querySelector(".feedback-form");
    if (open) {
      this.closeForm(el);
      if (wanted === "down") return; // the thumbs down toggles its form
    }
    if (ratings.get(id) === wanted) this.save(id, null);
    else if (wanted === "down") this.openForm(el);
    else this.save(id, wanted);
  }

  /** Store `rating` ("up", "down" or null to remove); true when the server took it. */
  async save(id, rating, reason = "") {
    busy.add(id);
    try {
      const data = await postJSON(this.url.replace(ZERO, id), { rating, reason });
      if (data.rating) ratings.set(id, data.rating);
      else ratings.delete(id);
      return true;
    } catch {
      toast(t("feedback_failed"), { error: true });
      return false;
    } finally {
      busy.delete(id);
      // The thread may have been redrawn meanwhile: whatever element shows the id now.
      const el = document.querySelector(`.msg[data-id="${CSS.escape(id)}"]`);
      if (el) showRating(el);
    }
  }

  openForm(el) {
    const form = document.createElement("form");
    form.className = "feedback-form";
    const area = document.createElement("textarea");
    area.rows = 2;
    area.maxLength = MAX_REASON;
    area.placeholder = t("feedback_reason");
    area.setAttribute("aria-label", t("feedback_reason"));
    const actions = document.createElement("div");
    actions.className = "feedback-actions";
    const cancel = document.createElement("button");
    cancel.type = "button";
    cancel.className = "btn feedback-cancel";
    cancel.textContent = t("cancel");
    const send = document.createElement("button");
    send.type = "submit";
    send.className = "btn btn-primary feedback-send";
    send.textContent = t("send");
    actions.append(cancel, send);
    form.append(area, actions);
    el.querySelector(".msg-actions").after(form);
    el.querySelector('.act-rate[data-rating="down"]').setAttribute("aria-expanded", "true");

    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      send.disabled = true;
      if (await this.save(el.dataset.id, "down", area.value)) {
        this.closeForm(el);
        toast(t("feedback_thanks"));
      } else {
        send.disabled = false;
      }
    });
    cancel.addEventListener("click", () => this.closeForm(el, true));
    area.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        if (!send.disabled) form.requestSubmit(send);
      } else if (event.key === "Escape") {
        event.stopPropagation();
        this.closeForm(el, true);
      }
    });
    area.focus({ preventScroll: true });
    form.scrollIntoView({ block: "nearest" });
  }

  closeForm(el, refocus = false) {
    el.querySelector(".feedback-form")?.remove();
    const down = el.querySelector('.act-rate[data-rating="down"]');
    down.removeAttribute("aria-expanded");
    if (refocus) down.focus();
  }
}
