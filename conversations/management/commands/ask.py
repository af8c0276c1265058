"""`manage.py ask "question"`: one question to a model server, streamed to the terminal.

An operator's tool for checking a backend end to end through the same client code the chat
uses: reasoning (dimmed on a terminal) and answer as they arrive, then usage and timings.
`--json` prints one object at the end instead, for scripts.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any, TextIO

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from conversations.backends import get_backend
from conversations.backends.base import (
    Answer,
    BackendConfig,
    BackendError,
    ChatRequest,
    ErrorKind,
    Finished,
    Reasoning,
    Usage,
)

DIM = "\x1b[2m"
RESET = "\x1b[0m"
DEEPSEEK_DEFAULT_MODEL = "deepseek-v4-flash"


def _env_configs() -> dict[str, tuple[BackendConfig, str]]:
    """The backends the environment defines, by their short names, with a default model."""
    found: dict[str, tuple[BackendConfig, str]] = {}
    if settings.DEEPSEEK_API_KEY:
        found["deepseek"] = (
            BackendConfig(
                kind="openai",
                base_url=settings.DEEPSEEK_BASE_URL,
                api_key=settings.DEEPSEEK_API_KEY,
                name="deepseek",
            ),
            DEEPSEEK_DEFAULT_MODEL,
        )
    if settings.R1CHAT_OPENAI_BASE_URL:
        found["openai"] = (
            BackendConfig(
                kind="openai",
                base_url=settings.R1CHAT_OPENAI_BASE_URL,
                api_key=settings.R1CHAT_OPENAI_API_KEY,
                name="openai",
            ),
            "",
        )
    ollama_url = settings.OLLAMA_BASE_URL or settings.OLLAMA_PROBE_URL
    if ollama_url:
        found["ollama"] = (
            BackendConfig(kind="ollama", base_url=ollama_url, name="ollama"),
            "",
        )
    return found


def _row_config(name: str) -> tuple[BackendConfig, str] | None:
    """A `conversations.Backend` row with that name, if the model and its table exist."""
    try:
        from conversations.models import Backend
    except ImportError:
        return None
    try:
        row = Backend.objects.filter(name__iexact=name).first()
    except Exception:  # no table yet (unmigrated database): fall back to the environment
        return None
    if row is None:
        return None
    return row.config(), str(getattr(row, "default_model", "") or "")


class Command(BaseCommand):
    help = "Ask a model server one question and stream its reasoning and answer."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("question")
        parser.add_argument("--backend", help="a configured backend by name")
        parser.add_argument("--backend-url", help="talk to this server instead")
        parser.add_argument("--kind", choices=["openai", "ollama"], help="with --backend-url")
        parser.add_argument("--api-key", default="", help="with --backend-url")
        parser.add_argument("--model", help="default: the backend's default or first model")
        parser.add_argument("--no-think", action="store_true", help="Deep Think off")
        parser.add_argument(
            "--no-enhanced", action="store_true", help="normal instead of highest effort"
        )
        parser.add_argument("--temperature", type=float)
        parser.add_argument("--max-tokens", type=int)
        parser.add_argument("--json", action="store_true", help="one JSON object at the end")

    def handle(self, *args: Any, **options: Any) -> None:
        config, default_model = self._config(options)
        result = asyncio.run(self._ask(config, options["model"] or default_model, options))
        if options["json"]:
            self.stdout.write(json.dumps(result, ensure_ascii=False))
        error = result["error"]
        if error is not None:
            # One line an operator can act on; exit status 1.
            raise CommandError(f"{error['kind']}: {error['detail']}")

    def _config(self, options: dict[str, Any]) -> tuple[BackendConfig, str]:
        if options["backend_url"]:
            url = options["backend_url"]
            kind = options["kind"] or ("ollama" if ":11434" in url else "openai")
            return BackendConfig(kind=kind, base_url=url, api_key=options["api_key"]), ""
        envs = _env_configs()
        name = options["backend"]
        if name:
            found = _row_config(name) or envs.get(name.lower())
            if found is None:
                known = ", ".join(sorted(envs)) or "none"
                raise CommandError(f"no backend named {name!r} (configured: {known})")
            return found
        for candidate in ("deepseek", "openai", "ollama"):
            if candidate in envs:
                return envs[candidate]
        raise CommandError("no backend configured: pass --backend-url URL")

    async def _ask(
        self, config: BackendConfig, model: str, options: dict[str, Any]
    ) -> dict[str, Any]:
        backend = get_backend(config)
        as_json: bool = options["json"]
        out: TextIO = self.stdout
        tty = not as_json and _isatty(out)
        reasoning: list[str] = []
        answer: list[str] = []
        usage: Usage | None = None
        finished: Finished | None = None
        error: BackendError | None = None
        start = time.perf_counter()
        first_reasoning: float | None = None
        first_answer: float | None = None
        phase = ""
        try:
            if not model:
                models = await backend.list_models()
                if not models:
                    raise BackendError(ErrorKind.MODEL_NOT_FOUND, "the server lists no models")
                model = models[0].name
            request = ChatRequest(
                model=model,
                messages=[{"role": "user", "content": options["question"]}],
                deep_think=not options["no_think"],
                enhanced_reasoning=not options["no_enhanced"],
                temperature=options["temperature"],
                max_tokens=options["max_tokens"],
            )
            async for event in backend.stream_chat(request):
                now = time.perf_counter() - start
                if isinstance(event, Reasoning):
                    first_reasoning = now if first_reasoning is None else first_reasoning
                    reasoning.append(event.text)
                    if not as_json:
                        if phase != "reasoning":
                            phase = "reasoning"
                            out.write(DIM if tty else "[reasoning]\n", ending="")
                        out.write(event.text, ending="")
                        out.flush()
                elif isinstance(event, Answer):
                    first_answer = now if first_answer is None else first_answer
                    answer.append(event.text)
                    if not as_json:
                        if phase != "answer":
                            if phase == "reasoning":
                                out.write(RESET if tty else "", ending="")
                                out.write("\n\n" if tty else "\n[answer]\n", ending="")
                            phase = "answer"
                        out.write(event.text, ending="")
                        out.flush()
                elif isinstance(event, Usage):
                    usage = event
                elif isinstance(event, Finished):
                    finished = event
        except BackendError as exc:
            error = exc
        finally:
            if tty and phase == "reasoning":
                out.write(RESET, ending="")
            await backend.aclose()
        total = time.perf_counter() - start
        first = first_reasoning if first_reasoning is not None else first_answer
        tokens_per_s: float | None = None
        if usage is not None and usage.completion_tokens and first is not None and total > first:
            tokens_per_s = round(usage.completion_tokens / (total - first), 1)
        timings = {
            "first_reasoning_s": _round(first_reasoning),
            "first_answer_s": _round(first_answer),
            "total_s": _round(total),
            "tokens_per_s": tokens_per_s,
        }
        result: dict[str, Any] = {
            "model": model,
            "reasoning": "".join(reasoning),
            "answer": "".join(answer),
            "finish_reason": finished.reason if finished else None,
            "reasoning_unterminated": bool(finished and finished.reasoning_unterminated),
            "usage": usage.as_dict() if usage else None,
            "timings": timings,
            "error": (
                {"kind": error.kind.value, "detail": error.detail, "retryable": error.retryable}
                if error
                else None
            ),
        }
        if not as_json and (error is None or phase):
            self._summary(result, phase != "")
        return result

    def _summary(self, result: dict[str, Any], wrote_text: bool) -> None:
        out = self.stdout
        if wrote_text:
            out.write("")
        parts = [f"model {result['model']}"]
        if result["finish_reason"]:
            parts.append(f"finish {result['finish_reason']}")
        if result["reasoning_unterminated"]:
            parts.append("stopped while thinking")
        usage = result["usage"] or {}
        if "prompt_tokens" in usage:
            parts.append(f"prompt {usage['prompt_tokens']} tok")
        if "completion_tokens" in usage:
            parts.append(f"completion {usage['completion_tokens']} tok")
        if "reasoning_tokens" in usage:
            parts.append(f"reasoning {usage['reasoning_tokens']} tok")
        t = result["timings"]
        if t["first_reasoning_s"] is not None:
            parts.append(f"first reasoning {t['first_reasoning_s']} s")
        if t["first_answer_s"] is not None:
            parts.append(f"first answer {t['first_answer_s']} s")
        parts.append(f"total {t['total_s']} s")
        if t["tokens_per_s"] is not None:
            parts.append(f"{t['tokens_per_s']} tok/s")
        out.write("— " + " · ".join(parts))


def _round(value: float | None) -> float | None:
    return round(value, 3) if value is not None else None


def _isatty(stream: Any) -> bool:
    target = getattr(stream, "_out", stream)  # Django's OutputWrapper keeps the real stream
    try:
        return bool(target.isatty()) and target is sys.stdout
    except (AttributeError, ValueError):
        return False
