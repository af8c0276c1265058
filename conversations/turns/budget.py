"""How many tokens a request asks for: the answer's maximum length, plus room for the
reasoning where the server's limit counts the reasoning too.

The maximum length a person sets is for the answer (default 2048, as the seed had it). Every
protocol r1chat speaks counts a thinking model's reasoning inside the same limit
(docs/backend-protocols.md):

- DeepSeek: `max_tokens` covers the chain of thought for `deepseek-reasoner` (since R1-0528)
  and for V4 in thinking mode; `deepseek-chat` (no thinking) writes at most 8K.
- Ollama: `options.num_predict` counts the `thinking` tokens as well.
- OpenAI-compatible servers (vLLM, llama.cpp, LM Studio, OpenRouter): `max_tokens` counts the
  reasoning the server parses out of the model's output.

So a request that thinks asks for the answer's length plus R1CHAT_REASONING_ALLOWANCE
tokens (default 8192), within the model's output and context limits where known; one that
does not think asks for the answer's length alone.
"""

from __future__ import annotations

from django.conf import settings

from ..backends.base import ModelInfo

# deepseek-chat's documented output limit (§1.3); the pair's info carries the reasoner's.
DEEPSEEK_CHAT_MAX_OUTPUT = 8192


def reasoning_allowance() -> int:
    return max(0, int(settings.R1CHAT_REASONING_ALLOWANCE))


def request_max_tokens(
    answer_tokens: int | None, *, model: str, info: ModelInfo | None, thinking: bool
) -> int | None:
    """The `max_tokens` (or `num_predict`) to send for an answer of at most `answer_tokens`."""
    if answer_tokens is None:
        return None
    wanted = answer_tokens + (reasoning_allowance() if thinking else 0)
    caps = []
    if info is not None and info.max_output_tokens:
        caps.append(info.max_output_tokens)
    if info is not None and info.context_length:
        caps.append(info.context_length)
    if not thinking and model.lower() in ("deepseek-chat", "deepseek-reasoner"):
        caps.append(DEEPSEEK_CHAT_MAX_OUTPUT)
    return max(1, min([wanted, *caps]))
