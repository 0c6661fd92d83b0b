"""Strings from runs, branches and bundles as GitHub reads them: plain text, never markup.

A run name, a branch, a hardware string, a metric key or a failure reason comes from the PR
stage or from whoever logged the run. Put into the PR comment raw, `> [!NOTE]` renders a callout,
`<!--` hides the rest of the comment, `|` breaks a table and `@name` pings someone; printed
into a workflow log, a line starting with `::` is a workflow command. These helpers make such a
string inert wherever it goes.
"""

from __future__ import annotations

import re

# emphasis, code, links, tables, strikethrough; an underscore inside a word (batch_size) is never emphasis
_INLINE = re.compile(r"([\\`*\[\]|~]|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9]))")
_HTML = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "@": "&#64;"}


def text(value: object) -> str:
    """`value` as one line of markdown text that renders as exactly its characters (no markup, no
    HTML, no mentions); line breaks become spaces. A bare URL may still be shown as a link."""
    line = " ".join(str(value).splitlines())
    line = _INLINE.sub(r"\\\1", line)
    line = "".join(_HTML.get(ch, ch) for ch in line)
    return "\\" + line if line[:1] in ("#", "-", "+", "=") else line  # a heading or a list if it started a line


def code(value: object, in_table: bool = False) -> str:
    """`value` as an inline code span, shown literally whatever it holds (the backtick fence is longer
    than any run of backticks inside; in a table cell a `|` is escaped, as GFM splits cells first)."""
    line = " ".join(str(value).splitlines())
    longest = max((len(m) for m in re.findall(r"`+", line)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if line.startswith(("`", " ")) or line.endswith(("`", " ")) else ""
    if in_table:
        line = line.replace("|", "\\|")
    return f"{fence}{pad}{line}{pad}{fence}"


def fenced(body: str, info: str = "") -> str:
    """`body` in a fenced code block that nothing inside it can close (the fence is longer than any
    run of backticks in it)."""
    longest = max((len(m) for m in re.findall(r"`+", body)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{info}\n{body}\n{fence}"


def log_line(value: object) -> str:
    """`value` for a workflow log: one line that cannot be read as a workflow command (`::name::`,
    or the older `##[name]`)."""
    line = " ".join(str(value).splitlines())
    return line.replace("::", ": :").replace("##[", "# #[")
