"""HTML reader (BeautifulSoup + lxml): a page's main text, or fields picked by CSS selectors.

Main text: the page without scripts, styles, navigation, header, footer, asides and forms; taken
from <main> / [role=main] / the <article>s when the page has them, else from <body>. Blocks (p, li,
h1-h6, ...) become lines. One record per page: {"text": ..., "title": ...}.

Selectors: `options: {selectors: {item: "div.qa", prompt: ".q", response: ".a"}}` makes one row per
`item` element with each other key filled from the first match inside it (`".link@href"` takes an
attribute instead of the text). Without `item`, every key's matches are paired in page order, and
pages where the counts differ are reported rather than mispaired.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator

from tunewise.data.readers import BadRow, RawRow, register
from tunewise.errors import DataError

_DROP = ["script", "style", "noscript", "template", "nav", "header", "footer", "aside", "form", "iframe", "svg",
         "button", "select", "dialog", "[role=navigation]", "[role=banner]", "[role=contentinfo]",
         "[role=complementary]", "[aria-hidden=true]", "[hidden]"]
# Class/id words that mark page chrome on sites without semantic tags.
_CHROME = re.compile(r"(^|[\s_-])(nav|navbar|menu|sidebar|breadcrumbs?|footer|cookie|banner|advert|ads|share|social|skip)($|[\s_-])", re.I)
_BLOCK = ["p", "div", "li", "h1", "h2", "h3", "h4", "h5", "h6", "tr", "pre", "blockquote", "section", "article",
          "table", "ul", "ol", "dl", "dt", "dd", "figcaption", "main"]


def _soup(path: Path, options: dict):
    from bs4 import BeautifulSoup

    # Bytes in: BeautifulSoup honours <meta charset> and otherwise detects the encoding itself.
    return BeautifulSoup(path.read_bytes(), options.get("parser", "lxml"),
                         from_encoding=options.get("encoding"))


def _is_chrome(tag) -> bool:
    if tag.name in ("html", "body", "main", "article"):
        return False
    attrs = getattr(tag, "attrs", None) or {}
    words = " ".join([*attrs.get("class", []), attrs.get("id", "") or ""])
    return bool(words and _CHROME.search(words))


def _text(el) -> str:
    return " ".join(el.get_text(" ").split())


def main_text(soup) -> str:
    for sel in _DROP:
        for tag in soup.select(sel):
            tag.decompose()
    for tag in [t for t in soup.find_all(True) if _is_chrome(t)]:
        if not tag.decomposed:
            tag.decompose()
    roots = soup.select("main") or soup.select("[role=main]") or soup.select("article") or [soup.body or soup]
    parts = []
    for root in roots:
        for br in root.find_all("br"):
            br.replace_with("\n")
        for block in root.find_all(_BLOCK):
            block.insert_before("\n")
            block.insert_after("\n")
        lines = (" ".join(line.split()) for line in root.get_text().splitlines())
        parts.append("\n".join(x for x in lines if x))
    return "\n\n".join(p for p in parts if p)


def _pick(el, selector: str):
    css, _, attr = selector.partition("@")
    found = el.select_one(css) if css else el
    if found is None:
        return None
    return found.get(attr) if attr else _text(found)


def _by_selectors(soup, path: Path, selectors: dict) -> Iterator[RawRow | BadRow]:
    if not isinstance(selectors, dict) or not selectors:
        raise DataError("`selectors` must map field names to CSS selectors", where="data.datasets[].options.selectors",
                        fix='e.g. selectors: {item: "div.qa", prompt: ".q", response: ".a"}')
    fields = {k: v for k, v in selectors.items() if k != "item"}
    item = selectors.get("item")
    if item:
        items = soup.select(item)
        if not items:
            yield BadRow(str(path), f"selector item '{item}' matched nothing on this page")
        for i, el in enumerate(items, start=1):
            yield RawRow({k: _pick(el, sel) for k, sel in fields.items()}, f"{path}:item {i}")
        return
    found = {}
    for k, sel in fields.items():
        css, _, attr = sel.partition("@")
        found[k] = [(e.get(attr) if attr else _text(e)) for e in soup.select(css)]
    counts = {k: len(v) for k, v in found.items()}
    if len(set(counts.values())) > 1:
        yield BadRow(str(path), "selectors matched different numbers of elements ("
                     + ", ".join(f"{k}: {n}" for k, n in counts.items()) + "), so they cannot be paired; "
                     "add an `item` selector for the element that holds one record")
        return
    for i, values in enumerate(zip(*found.values()), start=1):
        yield RawRow(dict(zip(found, values)), f"{path}:item {i}")


@register("html", ".html", ".htm", ".xhtml", options={
    "selectors": "CSS selectors: {item: <one record>, <field>: <selector inside it>, ...}; default: the page's main text",
    "encoding": "override the page's encoding (default: its <meta charset>, else detected)",
    "parser": "BeautifulSoup parser: lxml (default), html.parser or html5lib",
})
def read_html(path: Path, options: dict) -> Iterator[RawRow | BadRow]:
    soup = _soup(path, options)
    if "selectors" in options:
        yield from _by_selectors(soup, path, options["selectors"])
        return
    title = _text(soup.title) if soup.title else ""
    text = main_text(soup)
    if not text:
        yield BadRow(str(path), "the page has no main text (after removing navigation, scripts and page chrome)",
                     fix="the page may build its text with JavaScript (save the page as the browser shows it), or its "
                     "text sits in navigation-like elements: pick it with options: {selectors: {text: \"CSS selector\"}}; "
                     "or remove the page, or set data.strict: false to skip it")
        return
    yield RawRow({"text": text, "title": title}, f"{path}:1")
