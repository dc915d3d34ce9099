"""The `--help` text of a bench command, from its module docstring.

The bench's docstrings are written in Markdown, for the README's readers and the reviewers of
the code (`**Stream.**`, `` `bench.unary_floor` ``, links). A terminal does not render Markdown,
so `--help` shows the same text with the marks taken out: emphasis and code marks dropped, a
link as its text and its address in brackets (once when they are the same). Lists, paragraphs
and the docstring's own line breaks stay as written (`argparse.RawDescriptionHelpFormatter`),
so the text reads as the docstring does.
"""

from __future__ import annotations

import argparse
import re
from typing import Any, Final

_LINK: Final = re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)")
_STRONG: Final = re.compile(r"\*\*([^*]+)\*\*")
_CODE: Final = re.compile(r"``\s?(.+?)\s?``|`([^`]+)`")


def plain_text(markdown: str | None) -> str:
    """`markdown` with its emphasis, code marks and links turned into plain text."""
    text = markdown or ""
    text = _LINK.sub(lambda m: m[1] if m[1] == m[2] else f"{m[1]} ({m[2]})", text)
    text = _STRONG.sub(r"\1", text)
    return _CODE.sub(lambda m: m.group(1) or m.group(2), text)


def parser(prog: str, doc: str | None, **kwargs: Any) -> argparse.ArgumentParser:
    """An argument parser for `python -m <prog>` whose `--help` shows `doc` as plain text."""
    return argparse.ArgumentParser(
        prog=prog,
        description=plain_text(doc),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        **kwargs,
    )
