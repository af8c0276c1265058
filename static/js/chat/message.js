// One message on the page: built from the server's partial (a <template>) and kept up to date
// from frames. Model text is only ever shown as the server's sanitised HTML (the answer and the
// reasoning, rendered with every frame); the user's text is set with textContent. The raw text
// the frames also carry is kept for the copy button and lengths, never shown.
import { showFiles } from "./attachments.js";
import { showRating } from "./feedback.js";
import { formatNumber, t, thoughtFor } from "./i18n.js";
import { reasoningPrefs } from "./reasoning.js";

const templates = {
  user: document.getElementById("tpl-user"),
  assistant: document.getElementById("tpl-assistant"),
};

/** A new element for a serialised message (threads.serialize_message). */
export function createMessage(data) {
  const el = templates[data.role === "user" ? "user" : "assistant"].content.firstElementChild.cloneNode(true);
  if (data.role === "user") fillUser(el, data);
  else {
    fillAssistant(el, data);
    part(el, ".thinking").open = reasoningPrefs.expanded;
  }
  return el;
}

function part(el, selector) {
  return el.querySelector(selector);
}

function setVersions(el, versions) {
  const box = part(el, ".versions");
  const ids = versions?.ids || [];
  el.dataset.versions = JSON.stringify(ids);
  const index = versions?.index || 1;
  const count = versions?.count || 1;
  box.hidden = count < 2;
  part(box, ".versions-label").textContent = `${index} / ${count}`;
  part(box, ".version-prev").disabled = index <= 1;
  part(box, ".version-next").disabled = index >= count;
}

export function versionTarget(el, step) {
  const ids = JSON.parse(el.dataset.versions || "[]");
  const index = ids.indexOf(el.dataset.id);
  return ids[index + step] || null;
}

function fillUser(el, data) {
  el.dataset.id = data.id;
  el.dataset.parent = data.parent || "";
  part(el, ".user-text").textContent = data.content;
  part(el, ".user-bubble").hidden = !data.content; // (a question of files only)
  showFiles(el, data.attachments);
  setVersions(el, data.versions);
}

/** Replace everything an assistant element shows with `data` (a whole stored message). */
export function fillAssistant(el, data) {
  el.dataset.id = data.id;
  el.dataset.parent = data.parent || "";
  el.dataset.model = data.model || "";
  el.dataset.deepThink = String(Boolean(data.deep_think));
  el.dataset.usage = JSON.stringify(data.usage || {});
  el.dataset.timings = JSON.stringify(data.timings || {});
  setVersions(el, data.versions);
  const live = liveState(el);
  live.reasoning = data.reasoning || "";
  live.answer = data.content || "";
  live.seq = 0;
  setReasoningHTML(el, data.reasoning_html || "");
  setAnswerHTML(el, data.html || "");
  setStatus(el, data.status, data);
  showRating(el);
}

// Server-rendered HTML, sanitised with nh3 on the server (conversations/rendering.py): the
// finished blocks (stable) and the open last block (tail, replaced with every frame).
function setAnswerHTML(el, html, tail = "") {
  part(el, ".answer-stable").innerHTML = html;
  part(el, ".answer-tail").innerHTML = tail;
}

function setReasoningHTML(el, html, tail = "") {
  part(el, ".thinking-stable").innerHTML = html;
  part(el, ".thinking-tail").innerHTML = tail;
}

/** A frame's finished blocks and open tail (either may be absent: unchanged). */
function applyHTML(stable, tailBox, append, tail) {
  if (append) stable.insertAdjacentHTML("beforeend", append);
  if (tail != null) tailBox.innerHTML = tail;
}

const states = new WeakMap();

function liveState(el) {
  let state = states.get(el);
  if (!state) {
    state = { reasoning: "", answer: "", seq: 0, reasoningStart: null, answerStart: null, timer: null };
    states.set(el, state);
  }
  return state;
}

/** The raw text of a message, for the copy button. */
export function messageText(el) {
  if (el.dataset.role === "user") return part(el, ".user-text").textContent;
  const state = states.get(el);
  if (state?.answer) return state.answer;
  return part(el, ".answer").innerText.trim();
}

export function isStreaming(el) {
  return el.dataset.status === "streaming";
}

function setStatus(el, status, data = {}) {
  el.dataset.status = status;
  const live = liveState(el);
  const streaming = status === "streaming";
  const thinking = part(el, ".thinking");
  const hasReasoning = Boolean(live.reasoning);
  const hasAnswer = Boolean(live.answer) || Boolean(part(el, ".answer-stable").childElementCount);
  const wasHidden = thinking.hidden;
  thinking.hidden = !(hasReasoning || (streaming && el.dataset.deepThink === "true" && !hasAnswer));
  // The reasoning stays as the user keeps it (open by default), while streaming and after.
  if (wasHidden && !thinking.hidden) thinking.open = reasoningPrefs.expanded;
  part(el, ".typing").hidden = !(streaming && !hasAnswer && thinking.hidden);
  if (streaming) {
    startTimer(el);
  } else {
    stopTimer(el);
    const timings = JSON.parse(el.dataset.timings || "{}");
    part(el, ".thinking-label").textContent = thoughtFor(timings.thought_seconds ?? measured(live));
  }
  // "Continue generating": a finished answer cut off at the maximum length (not mid-thought).
  part(el, ".continue-btn").hidden = !(
    status === "complete" && data.finish_reason === "length" && !data.reasoning_unterminated && hasAnswer
  );
  const notice = streaming ? "" : noticeFor(status, data);
  part(el, ".msg-notice").textContent = notice;
  part(el, ".msg-notice").hidden = !notice;
  const error = streaming ? null : data.error;
  const box = part(el, ".msg-error");
  box.hidden = !error;
  part(box, ".msg-error-text").textContent = error ? error.message || t("unknown_error") : "";
  part(box, ".retry-btn").hidden = !error?.retryable;
  part(el, ".msg-usage").textContent = streaming ? "" : usageText(el);
}

function noticeFor(status, data) {
  if (data.reasoning_unterminated) return t("unterminated");
  if (data.finish_reason === "length") return t("cut_off");
  if (status === "stopped") return t("stopped");
  return "";
}

function measured(live) {
  if (live.reasoningStart == null) return null;
  const end = live.answerStart ?? Date.now();
  return (end - live.reasoningStart) / 1000;
}

// --- the running timer --------------------------------------------------------------------

function startTimer(el) {
  const live = liveState(el);
  if (live.timer) return;
  const tick = () => {
    if (!el.isConnected) return stopTimer(el);
    const label = part(el, ".thinking-label");
    if (live.answerStart != null) {
      label.textContent = thoughtFor(measured(live));
    } else if (live.reasoningStart != null) {
      const seconds = Math.max(0, Math.floor((Date.now() - live.reasoningStart) / 1000));
      label.textContent = t("thinking_seconds", { count: seconds });
    } else {
      label.textContent = t("thinking");
    }
  };
  tick();
  live.timer = setInterval(tick, 250);
}

function stopTimer(el) {
  const live = states.get(el);
  if (live?.timer) {
    clearInterval(live.timer);
    live.timer = null;
  }
}

// --- frames -------------------------------------------------------------------------------

/** A message.created for a streaming assistant: the clock starts now. */
export function markCreated(el, data) {
  const live = liveState(el);
  const timings = data.timings || {};
  if (timings.first_reasoning != null) live.reasoningStart = Date.now();
  if (timings.first_answer != null) live.answerStart = Date.now();
}

/** Everything so far, for a tab that (re)subscribed mid-stream. */
export function applySnapshot(el, frame) {
  const live = liveState(el);
  live.seq = frame.seq || 0;
  live.reasoning = frame.reasoning || "";
  live.answer = frame.answer || "";
  const elapsed = frame.server_elapsed;
  const timings = frame.timings || {};
  // The server's clock, moved to ours: when reasoning and the answer began.
  if (elapsed != null) {
    const created = Date.now() - elapsed * 1000;
    live.reasoningStart = timings.first_reasoning != null ? created + timings.first_reasoning * 1000 : null;
    live.answerStart = timings.first_answer != null ? created + timings.first_answer * 1000 : null;
  }
  setReasoningHTML(el, frame.reasoning_html_stable || "", frame.reasoning_html_tail || "");
  if (frame.html_stable != null) setAnswerHTML(el, frame.html_stable, frame.html_tail || "");
  else setAnswerHTML(el, "", frame.html || "");
  setStatus(el, "streaming");
}

/** New text since the previous frame; a frame already seen (by seq) is ignored. Returns
 * "gap" (and applies nothing) when frames are missing before this one: the caller then takes a
 * fresh snapshot. A delta covers the frames from_seq..seq. */
export function applyDelta(el, frame) {
  const live = liveState(el);
  if (frame.seq != null && frame.seq <= live.seq) return false;
  if (frame.seq != null && (frame.from_seq ?? frame.seq) > live.seq + 1) return "gap";
  live.seq = frame.seq ?? live.seq;
  if (el.dataset.status !== "streaming") setStatus(el, "streaming");
  if (frame.reasoning) {
    if (live.reasoningStart == null) {
      live.reasoningStart = Date.now();
      part(el, ".thinking-label").textContent = t("thinking_seconds", { count: 0 });
    }
    live.reasoning += frame.reasoning;
    const thinking = part(el, ".thinking");
    if (thinking.hidden) {
      thinking.hidden = false;
      thinking.open = reasoningPrefs.expanded;
      part(el, ".typing").hidden = true;
    }
  }
  if (frame.answer) {
    const first = !live.answer;
    live.answer += frame.answer;
    if (first) {
      if (live.answerStart == null) live.answerStart = Date.now();
      const thinking = part(el, ".thinking"); // (it stays open or folded as it is)
      if (live.reasoning) {
        // "Thought for N seconds" at once, not at the timer's next tick.
        part(el, ".thinking-label").textContent = thoughtFor(measured(live));
      } else {
        thinking.hidden = true;
      }
      part(el, ".typing").hidden = true;
    }
  }
  applyHTML(part(el, ".thinking-stable"), part(el, ".thinking-tail"), frame.reasoning_html_append, frame.reasoning_html_tail);
  applyHTML(part(el, ".answer-stable"), part(el, ".answer-tail"), frame.html_append, frame.html_tail);
  return true;
}

/** The terminal frame: the final HTML replaces everything streamed. */
export function applyDone(el, frame) {
  const live = liveState(el);
  if (frame.timings) el.dataset.timings = JSON.stringify(frame.timings);
  if (frame.usage) el.dataset.usage = JSON.stringify(frame.usage);
  setAnswerHTML(el, frame.html || "");
  if (frame.reasoning_html != null) setReasoningHTML(el, frame.reasoning_html);
  if (frame.html) live.answer = live.answer || part(el, ".answer").innerText;
  setStatus(el, frame.status, frame);
}

// --- usage and speed -----------------------------------------------------------------------

function usageText(el) {
  const usage = JSON.parse(el.dataset.usage || "{}");
  const timings = JSON.parse(el.dataset.timings || "{}");
  const lines = [];
  if (el.dataset.model) lines.push(el.dataset.model);
  const out = usage.completion_tokens;
  if (out != null) {
    let line = t("usage_tokens", { count: formatNumber(out) });
    if (usage.reasoning_tokens) line += ` (${t("usage_reasoning", { count: formatNumber(usage.reasoning_tokens) })})`;
    lines.push(line);
  }
  if (usage.prompt_tokens != null) lines.push(t("usage_prompt", { count: formatNumber(usage.prompt_tokens) }));
  const start = timings.first_reasoning ?? timings.first_answer;
  let seconds = usage.generation_seconds;
  if (seconds == null && start != null && timings.finished != null) seconds = timings.finished - start;
  if (out && seconds > 0) lines.push(t("usage_speed", { rate: (out / seconds).toFixed(1) }));
  if (timings.finished != null) lines.push(t("usage_time", { seconds: timings.finished.toFixed(1) }));
  if (start != null) lines.push(t("usage_first_token", { seconds: start.toFixed(2) }));
  return lines.join("\n");
}

/** Fill what the server-rendered messages leave to the script (the usage tooltip). */
export function hydrate(el) {
  if (el.dataset.role === "assistant") {
    const source = el.querySelector("template.msg-source");
    const live = liveState(el);
    if (source) live.answer = source.content.textContent;
    live.reasoning = part(el, ".thinking-text").textContent;
    if (!isStreaming(el)) part(el, ".msg-usage").textContent = usageText(el);
  }
}

/** The connection to the server was lost mid-answer: shown as interrupted with what came so
 * far and a Retry (the server's own record replaces it once the socket is back). */
export function markLost(el, message) {
  const tail = part(el, ".answer-tail");
  if (tail.childNodes.length) part(el, ".answer-stable").append(...tail.childNodes);
  setStatus(el, "interrupted", { error: { code: "interrupted", message, retryable: true } });
}
