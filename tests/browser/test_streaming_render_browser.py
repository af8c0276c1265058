"""What a reader sees while an answer streams: rendered markdown at every animation frame.

A markdown-heavy answer and reasoning (the simulator's MARKDOWN_SCRIPT: headings, bold over
several tokens, a list, a table, inline and display math, a long code block) stream through
the real pipeline. A requestAnimationFrame loop in the page records the text of the answer and
of the reasoning at every frame the browser paints; no recorded frame may hold markdown source,
and while the code block is open it must already show as a code block.
"""

from __future__ import annotations

import pytest

from conversations.simulator import MARKDOWN_SCRIPT, Scenario
from tests.browser.conftest import screenshot

pytestmark = pytest.mark.timeout(120)

# Every animation frame: the answer's and the reasoning's text, and the text of the code blocks
# in each (recorded only when something changed, with the number of frames seen).
SAMPLER = """
() => {
  const samples = [];
  let frames = 0;
  let last = "";
  const codeOf = (box) => [...box.querySelectorAll("pre code")].map((c) => c.textContent);
  const tick = () => {
    frames += 1;
    const msg = document.querySelector(".msg-assistant");
    if (msg) {
      const answer = msg.querySelector(".answer");
      const reasoning = msg.querySelector(".thinking-text");
      const sample = {
        status: msg.dataset.status,
        answer: answer.textContent,
        reasoning: reasoning.textContent,
        answerCode: codeOf(answer),
        reasoningCode: codeOf(reasoning),
        answerHighlighted: answer.querySelectorAll("pre code span").length > 0,
        reasoningHighlighted: reasoning.querySelectorAll("pre code span").length > 0,
      };
      const key = JSON.stringify(sample);
      if (key !== last) {
        samples.push(sample);
        last = key;
      }
    }
    if (!window.__stopSampling) requestAnimationFrame(tick);
  };
  window.__samples = samples;
  window.__frames = () => frames;
  requestAnimationFrame(tick);
}
"""

# Markdown source that must never be on screen. The script's text has none of these once
# rendered (its code holds no `**`, `##`, `$$` or fence), so any of them seen is unrendered.
RAW = ("**", "##", "$$", "```", "$", "`")


def _first_and_last_code_lines(code: str) -> tuple[str, str]:
    lines = [line for line in code.splitlines() if line.strip()]
    return lines[0], lines[-1]


def test_every_frame_shows_rendered_markdown(signed_in, live_server_url, simulator):
    simulator.scenario = Scenario(
        reasoning_text=MARKDOWN_SCRIPT.reasoning, answer_text=MARKDOWN_SCRIPT.answer, token_rate=30
    )
    page, _user, watch = signed_in()
    page.goto(live_server_url + "/")
    page.wait_for_selector("#conn[data-state=open]")
    page.wait_for_function("() => document.querySelector('#model-picker').options.length > 1")
    page.evaluate(SAMPLER)
    page.fill("#composer-input", "How much energy is in one gram?")
    page.keyboard.press("Enter")

    # (Pictures mid-stream: the reasoning, then the answer's open code block.)
    page.wait_for_function(
        "() => document.querySelector('.msg-assistant .thinking-text')?.textContent"
        ".includes('one gram is')",
        timeout=60_000,
    )
    screenshot(page, "streaming-markdown-reasoning")
    page.wait_for_function(
        "() => document.querySelector('.msg-assistant .answer').textContent"
        ".includes('def in_tonnes_of_tnt')"
        " && document.querySelector('.msg-assistant').dataset.status === 'streaming'",
        timeout=60_000,
    )
    screenshot(page, "streaming-markdown-open-fence")
    page.wait_for_selector(".msg-assistant[data-status=complete]", timeout=60_000)
    screenshot(page, "streaming-markdown-complete")
    page.evaluate("() => { window.__stopSampling = true; }")
    samples = page.evaluate("() => window.__samples")
    frames = page.evaluate("() => window.__frames()")

    for sample in samples:
        for part in ("answer", "reasoning"):
            shown = [raw for raw in RAW if raw in sample[part]]
            assert not shown, (part, shown, sample[part])

    streaming = [s for s in samples if s["status"] == "streaming"]
    answer_states = {s["answer"] for s in streaming if s["answer"]}
    reasoning_states = {s["reasoning"] for s in streaming if s["reasoning"].strip()}
    # The stream was seen growing over many painted frames, in both parts (the open block's
    # rendering is paced by its cost: generation.RENDER_SHARE).
    assert frames > 200, frames
    assert len(answer_states) > 10, len(answer_states)
    assert len(reasoning_states) > 5, len(reasoning_states)

    # While each fence was open, its first lines showed inside <pre><code>, not yet
    # highlighted, before its last line had arrived.
    for part, script in (
        ("answer", MARKDOWN_SCRIPT.answer),
        ("reasoning", MARKDOWN_SCRIPT.reasoning),
    ):
        code = script.split("```python\n", 1)[1].split("```", 1)[0]
        first, last = _first_and_last_code_lines(code)
        open_fence = [
            s
            for s in streaming
            if any(first in c and last not in c for c in s[f"{part}Code"])
            and not s[f"{part}Highlighted"]
        ]
        assert open_fence, part

    # The final rendering: every construct is there.
    answer = page.locator(".msg-assistant .answer")
    assert answer.locator("h1").count() == 1 and answer.locator("h2").count() == 1
    assert answer.locator("table td").count() == 9
    assert answer.locator("math").count() >= 5
    assert answer.locator(".code-block pre code span").count() > 10  # highlighted once closed
    reasoning = page.locator(".msg-assistant .thinking-text")
    assert reasoning.locator("h2").count() == 1 and reasoning.locator("strong").count() == 3
    assert reasoning.locator("math").count() == 3
    assert reasoning.locator(".code-block pre code span").count() > 3
    assert watch.errors == []

    # After a reload the stored message shows the same rendering, reasoning included.
    live_reasoning = reasoning.inner_html()
    page.reload()
    page.wait_for_selector(".msg-assistant[data-status=complete]")
    assert page.locator(".msg-assistant .thinking-text").inner_html() == live_reasoning
    assert page.locator(".msg-assistant .thinking-text h2").count() == 1
