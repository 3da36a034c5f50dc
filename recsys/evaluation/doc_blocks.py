"""Generated blocks in Markdown documents: the text between two marker comments, rewritten from results.

Docs quote tables that code renders from committed JSON; each such table sits between a start and an
end marker (HTML comments, invisible when rendered) and is replaced as a whole, markers kept.
"""

from __future__ import annotations


def replace_block(text: str, start: str, end: str, body: str) -> str | None:
    """`text` with what lies between the first `start` and the `end` after it replaced by `body`
    (both markers kept); None when either marker is missing."""
    if start not in text:
        return None
    inside = text.index(start) + len(start)
    stop = text.find(end, inside)
    if stop < 0:
        return None
    return text[:inside] + body + text[stop:]
