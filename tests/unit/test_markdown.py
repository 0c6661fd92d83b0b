"""Strings from runs, branches and bundles stay text in the PR comment and in workflow logs (#29)."""

from __future__ import annotations

import html
import re

from hypothesis import given
from hypothesis import strategies as st
from markdown_it import MarkdownIt

from flowops import markdown as md

GFM = MarkdownIt("commonmark").enable(["table", "strikethrough"])


def rendered_text(markdown: str) -> str:
    """The text of rendered markdown (tags dropped, entities decoded, the paragraph's own line end gone)."""
    return html.unescape(re.sub(r"<[^>]+>", "", GFM.render(markdown))).removesuffix("\n")


HOSTILE = [
    "> [!IMPORTANT]\n> Approved by @maintainer",  # a callout and a mention
    "tiny <!-- the rest of the comment is hidden",
    "a | b | c",  # table cells
    "`code` **bold** _em_ ~~gone~~ [link](https://example.invalid) ![img](x.png)",
    "# heading",
    "- a list item",
    "<script>alert(1)</script> &amp; &lt;",
    "https://example.invalid/autolink www.example.invalid",
    "back\\slash\\` and \\|",
]


def test_hostile_strings_render_as_their_own_characters_in_a_table_cell():
    for value in HOSTILE:
        cell = md.text(value)
        out = GFM.render(f"| name | value |\n|---|---|\n| x | {cell} |")
        assert out.count("<td>") == 2, (value, out)  # still one row of two cells
        for tag in ("<blockquote", "<a ", "<img", "<code", "<strong", "<em", "<s>", "<h1", "<li", "<script"):
            assert tag not in out, (value, tag, out)
        assert "<!--" not in out
        shown = html.unescape(re.search(r"<td>x</td>\s*<td>(.*?)</td>", out, re.S).group(1))
        assert shown == " ".join(value.splitlines()), (value, out)


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=60))
def test_any_string_renders_as_exactly_itself(value):
    """Mid-line, as the report places every such string; a paragraph drops only its trailing blanks."""
    expected = "seen: " + " ".join(value.splitlines())
    assert rendered_text("seen: " + md.text(value)) == expected.rstrip()


def test_a_mention_is_not_a_mention():
    assert "@" not in md.text("@octocat")


def test_a_fence_nothing_inside_can_close():
    body = "line\n```\n# not a heading\n````"
    out = GFM.render(md.fenced(body))
    assert out.count("<pre>") == 1 and "<h1>" not in out
    assert html.unescape(re.search(r"<code>(.*)</code>", out, re.S).group(1)) == body + "\n"


def test_log_lines_cannot_be_workflow_commands():
    for value in ["::error::forged", "x\n::set-output name=a::b", "##[error]old style", "a::b\r::warning::c"]:
        line = md.log_line(value)
        assert "\n" not in line and "\r" not in line
        assert "::" not in line and "##[" not in line


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=40))
def test_a_code_span_in_a_table_cell_shows_any_string_literally(value):
    out = GFM.render(f"| a | b |\n|---|---|\n| x | {md.code(value, in_table=True)} |")
    cell = re.search(r"<td>x</td>\s*<td>(.*?)</td>", out, re.S)
    assert out.count("<td>") == 2 and cell is not None, out
    shown = " ".join(value.splitlines())
    if shown.strip(" "):  # a span of only spaces renders as those spaces, stripped by the cell
        assert cell.group(1) == "<code>" + html.escape(shown, quote=False).replace('"', "&quot;") + "</code>"
