// HTTP calls to the chat's JSON endpoints (same origin, CSRF token from the page).
const csrfToken = document.querySelector('meta[name="csrf-token"]')?.content || "";

export class RequestError extends Error {
  constructor(status, data) {
    super(data?.detail || `HTTP ${status}`);
    this.status = status;
    this.data = data;
  }
}

async function parse(response) {
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (response.status === 403 && data?.redirect) {
    window.location.assign(data.redirect);
  }
  if (!response.ok) throw new RequestError(response.status, data);
  return data;
}

export async function getJSON(url, params = {}) {
  const query = new URLSearchParams(
    Object.entries(params).filter(([, value]) => value !== "" && value != null),
  );
  const target = query.size ? `${url}?${query}` : url;
  const response = await fetch(target, {
    headers: { Accept: "application/json" },
    credentials: "same-origin",
  });
  return parse(response);
}

export async function postJSON(url, body = {}) {
  const response = await fetch(url, {
    method: "POST",
    headers: {
      "Content-Type": "application/json",
      Accept: "application/json",
      "X-CSRFToken": csrfToken,
    },
    credentials: "same-origin",
    body: JSON.stringify(body),
  });
  return parse(response);
}
