"""What a person is told when a generation fails, by error code."""

from __future__ import annotations

from django.utils.translation import gettext_lazy as _

# code → (message, whether "Retry" helps)
ERROR_MESSAGES = {
    "unreachable": (_("The model server could not be reached. It may be down or starting."), True),
    "auth": (_("The model server rejected the API key. An administrator needs to fix it."), False),
    "no_balance": (_("The model provider's account has run out of balance."), False),
    "rate_limited": (_("The model server is rate limiting requests. Try again in a moment."), True),
    "overloaded": (_("The model server is overloaded. Try again in a moment."), True),
    "gateway": (
        _(
            "A proxy or gateway in front of the model server got no answer from it. "
            "Try again in a moment."
        ),
        True,
    ),
    "server": (_("The model server had an internal error."), True),
    "model_not_found": (_("This model is not available on the model server."), False),
    "no_thinking": (_("This model cannot think. Turn Deep Think off and try again."), False),
    "bad_request": (_("The model server rejected the request."), False),
    "content_filter": (_("The answer was blocked by the provider's content filter."), False),
    "protocol": (_("The model server sent a response r1chat could not read."), True),
    "truncated": (
        _("The connection to the model server was lost before the answer finished."),
        True,
    ),
    "timeout": (_("The model server did not respond in time."), True),
    "stream": (_("The model server reported an error while answering."), True),
    "interrupted": (_("The generation was interrupted: the server restarted."), True),
    "no_backend": (_("No model server is configured. An administrator needs to add one."), False),
    "quota": (_("You have used up your token quota for today."), False),
    "internal": (_("Something went wrong in r1chat while answering."), True),
}


def describe_error(code: str) -> dict[str, object]:
    message, retryable = ERROR_MESSAGES.get(code, ERROR_MESSAGES["internal"])
    return {"code": code, "message": str(message), "retryable": retryable}
