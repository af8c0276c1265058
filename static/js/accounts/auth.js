// Resend buttons: disabled with a countdown until the server allows another code.
// <button data-countdown="42" data-wait-label="Resend code in %ss">Resend code</button>
for (const button of document.querySelectorAll("[data-countdown]")) {
  let remaining = Number.parseInt(button.dataset.countdown, 10) || 0;
  if (remaining <= 0) continue;
  const label = button.textContent;
  const template = button.dataset.waitLabel || "%ss";
  const render = () => {
    if (remaining <= 0) {
      button.disabled = false;
      button.textContent = label;
      return false;
    }
    button.disabled = true;
    button.textContent = template.replace("%s", String(remaining));
    return true;
  };
  render();
  const timer = setInterval(() => {
    remaining -= 1;
    if (!render()) clearInterval(timer);
  }, 1000);
}

// The chosen tab's input gets the focus.
for (const radio of document.querySelectorAll(".auth-tab-radio")) {
  radio.addEventListener("change", () => {
    const pane = radio.form?.querySelector(`.auth-pane-${radio.value} input`);
    pane?.focus();
  });
}
