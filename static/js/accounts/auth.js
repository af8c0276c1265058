// Buttons that send a code: disabled with a countdown until the server allows another one.
// <button data-countdown="42" data-wait-label="Resend code in %s s">Resend code</button>
// With data-countdown-reset="input", typing another address in the form ends the countdown
// (the delay is per address; the server checks it again).
for (const button of document.querySelectorAll("[data-countdown]")) {
  let remaining = Number.parseInt(button.dataset.countdown, 10) || 0;
  if (remaining <= 0) continue;
  const label = button.textContent;
  const template = button.dataset.waitLabel || "%s s";
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
  if (button.dataset.countdownReset === "input" && button.form) {
    button.form.addEventListener(
      "input",
      () => {
        remaining = 0;
        render();
        clearInterval(timer);
      },
      { once: true },
    );
  }
}

// The chosen tab's input gets the focus.
for (const radio of document.querySelectorAll(".auth-tab-radio")) {
  radio.addEventListener("change", () => {
    const pane = radio.form?.querySelector(`.auth-pane-${radio.value} input`);
    pane?.focus();
  });
}
