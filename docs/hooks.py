"""MkDocs hook: a placeholder such as <run> or <seed> in a docstring or page reads as text.

The package's docstrings write paths as `runs/<run>/config.toml` without always putting them in
backticks; Markdown would take `<run>` for an (unknown) HTML tag and drop it from the page. This
adds an inline pattern, ahead of Markdown's raw-HTML one and after code spans, that keeps any
`<name>` that is not an HTML tag as literal text. It is added to the site's Markdown extensions
before the plugins read them, so mkdocstrings renders docstrings with it too.
"""
from __future__ import annotations

import re
from typing import Any

from markdown import Extension, Markdown
from markdown.inlinepatterns import InlineProcessor
from mkdocs.plugins import event_priority

HTML_TAGS = frozenset("""
a abbr address article aside audio b bdi bdo blockquote br button caption cite code col colgroup data
dd del details dfn div dl dt em figcaption figure footer form h1 h2 h3 h4 h5 h6 header hr i iframe img
input ins kbd label legend li main mark nav noscript ol optgroup option p picture pre q s samp script
section select small source span strong style sub summary sup svg table tbody td template textarea
tfoot th thead time tr u ul var video wbr
""".split())


class _Placeholder(InlineProcessor):
    def handleMatch(self, m: re.Match[str], data: str) -> tuple[Any, Any, Any]:  # noqa: N802 (Markdown's API)
        if m.group(1).lower() in HTML_TAGS:
            return None, None, None  # a real tag: leave it to the raw-HTML pattern
        return m.group(0), m.start(0), m.end(0)  # a string is emitted as (escaped) text


class PlaceholderExtension(Extension):
    def extendMarkdown(self, md: Markdown) -> None:  # noqa: N802 (Markdown's API)
        # backticks are 190, raw HTML 90: between them, code spans keep their text as written
        md.inlinePatterns.register(_Placeholder(r"</?([A-Za-z][\w-]*)>", md), "rlsuite_placeholder", 95)


@event_priority(100)  # before the plugins (mkdocstrings copies the extension list in its on_config)
def on_config(config: Any) -> Any:
    config.markdown_extensions.append(PlaceholderExtension())
    return config
