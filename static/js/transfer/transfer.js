// Import and export on the account page: forms are sent with fetch and the server answers with
// the section re-rendered (templates/transfer/_panel.html), which replaces the old one; while
// an import runs the section is fetched again every second. Without scripts the same forms post
// and redirect back.
const panel = document.getElementById("transfer-panel");
const strings = JSON.parse(document.getElementById("transfer-strings")?.textContent || "{}");
const POLL_MS = 1000;
let timer = null;

function csrfToken() {
  return panel.querySelector("input[name=csrfmiddlewaretoken]")?.value || "";
}

function showError(text) {
  const box = panel.querySelector("#import-error");
  if (!box) return;
  box.textContent = text;
  box.hidden = !text;
}

function replacePanel(html) {
  // HTML rendered and escaped by the server's template.
  panel.innerHTML = html;
  schedule();
}

function schedule() {
  clearTimeout(timer);
  if (panel.querySelector(".transfer[data-active=true]")) timer = setTimeout(refresh, POLL_MS);
}

async function refresh() {
  try {
    const response = await fetch(panel.dataset.url, { credentials: "same-origin" });
    if (response.ok) {
      replacePanel(await response.text());
      return;
    }
  } catch {
    // offline for a moment: try again
  }
  schedule();
}

async function submit(form) {
  const button = form.querySelector("button[type=submit]");
  if (button) button.disabled = true;
  showError("");
  if (form.id === "import-form") {
    const note = panel.querySelector("#import-error");
    if (note) {
      note.hidden = false;
      note.classList.remove("auth-msg-error");
      note.textContent = strings.checking || "";
    }
  }
  let data = {};
  let ok = false;
  try {
    const response = await fetch(form.action, {
      method: "POST",
      body: new FormData(form),
      credentials: "same-origin",
      headers: { Accept: "application/json", "X-CSRFToken": csrfToken() },
    });
    ok = response.ok;
    data = await response.json().catch(() => ({}));
  } catch {
    ok = false;
  }
  if (ok && data.html !== undefined) {
    replacePanel(data.html);
    return;
  }
  if (button) button.disabled = false;
  panel.querySelector("#import-error")?.classList.add("auth-msg-error");
  showError(data.detail || strings.failed || "");
}

panel?.addEventListener("submit", (event) => {
  const form = event.target;
  if (!(form instanceof HTMLFormElement)) return;
  event.preventDefault();
  submit(form);
});

if (panel) schedule();
