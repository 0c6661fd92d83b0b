"""Read a YAML file strictly, keeping the line of every key.

PyYAML's loaders accept duplicate keys silently, construct arbitrary tags and expand
aliases without limit. We compose the node graph (linear in the file size, aliases are
shared nodes) and build plain values ourselves, so that:

- every mapping key and sequence item keeps its line, for `file:line:` messages;
- a duplicate key, a non-standard tag or a merge key is an error, not a surprise;
- alias expansion is bounded (a "billion laughs" file fails fast in bounded memory);
- plain scalars mean what YAML 1.2's core schema says (PyYAML implements YAML 1.1):
  `1e-4` is a number, `yes`/`no`/`on`/`off` are text, `0o17`/`0x1f` are octal/hex; an
  integer with a leading zero (`010`: 8 in YAML 1.1, 10 in YAML 1.2) is an error, as the two
  readings differ.
"""

from __future__ import annotations

import datetime
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from flowops.errors import Problem, ProblemsError

MAX_BYTES = 1 << 20  # experiment files are hand-written; 1 MiB is generous
MAX_NODES = 100_000  # values after alias expansion
MAX_DEPTH = 64

_CORE = "tag:yaml.org,2002:"
_SCALAR_TAGS = {_CORE + t for t in ("null", "bool", "int", "float", "str", "timestamp")}
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

Loc = tuple[str | int, ...]

# YAML 1.2 core schema (https://yaml.org/spec/1.2.2/#1032-tag-resolution), for plain scalars.
_NULL = re.compile(r"~|null|Null|NULL|")
_TRUE, _FALSE = re.compile(r"true|True|TRUE"), re.compile(r"false|False|FALSE")
_INT = re.compile(r"[-+]?[0-9]+")
_OCT, _HEX = re.compile(r"0o[0-7]+"), re.compile(r"0x[0-9a-fA-F]+")
_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")
_RESOLVER = yaml.resolver.Resolver()
LEADING_ZERO = "an integer with a leading zero is ambiguous (8 in YAML 1.1, 10 in 1.2); write it without the zero"
_INF, _NAN = re.compile(r"[-+]?\.(inf|Inf|INF)"), re.compile(r"\.(nan|NaN|NAN)")


@dataclass
class Document:
    """A parsed YAML file: its value and the 1-based line of each key or item."""

    path: str
    data: Any
    lines: dict[Loc, int] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)  # with keep_going: values read as None
    unreadable: set[Loc] = field(default_factory=set)  # where those values are

    def line_of(self, loc: Loc) -> int:
        """Line of `loc`, or of its nearest ancestor that exists in the file."""
        loc = tuple(loc)
        while loc and loc not in self.lines:
            loc = loc[:-1]
        return self.lines.get(loc, 1)


def read_text(path: str | Path, what: str = "file") -> str:
    """The file's text; one-line errors for a missing path, a folder, size, binary, encoding."""
    p, path = Path(path), str(path)
    if not p.exists():
        raise ProblemsError([Problem(path, f"no such {what}")])
    outside = _link_outside(p)
    if outside:
        raise ProblemsError([Problem(path, f"is a symbolic link to {outside}, outside the repository; not read")])
    if p.is_dir():
        raise ProblemsError([Problem(path, f"is a directory, expected a YAML {what}")])
    size = p.stat().st_size
    if size > MAX_BYTES:
        raise ProblemsError([Problem(path, f"file is {size} bytes, over the {MAX_BYTES} byte limit")])
    raw = p.read_bytes()
    if b"\0" in raw:
        raise ProblemsError([Problem(path, f"binary content (NUL byte at offset {raw.index(0)}), expected YAML text")])
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ProblemsError([Problem(path, f"not UTF-8 text (byte 0x{raw[exc.start]:02x})", line)]) from None


def _link_outside(p: Path, root: Path | None = None) -> str | None:
    """Where a path that goes through a symbolic link leads, when that is outside `root` (the working
    folder: the repository a CI job checked out); None for plain files and links within it."""
    resolved = p.resolve()
    if resolved == p.absolute():
        return None
    root = (root or Path.cwd()).resolve()
    return None if resolved.is_relative_to(root) else str(resolved)


def load(path: str | Path, text: str | None = None, keep_going: bool = False) -> Document:
    """Parse one YAML document strictly. Raises FlowopsError / ProblemsError.

    `keep_going`: a value the file's YAML makes ambiguous or forbidden (a leading zero, a tag) does
    not stop the reading; it is None in `data`, its problem in `problems` and its place in
    `unreadable`, so a loader reports it with every other problem of the file."""
    path = str(path)
    if text is None:
        text = read_text(path)
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        problem = exc.problem or exc.context
        if "another document" in str(problem):
            problem = "more than one document ('---'); expected exactly one"
        raise ProblemsError([Problem(path, f"not valid YAML: {problem}", line)]) from None
    except yaml.YAMLError as exc:  # e.g. a reader error for control characters
        raise ProblemsError([Problem(path, f"not valid YAML: {str(exc).splitlines()[0]}")]) from None
    doc = Document(path, None)
    if node is None:
        return doc
    builder = _Builder(doc)
    doc.data = builder.build(node, (), 0)
    if builder.problems and not keep_going:
        raise ProblemsError(builder.problems)
    doc.problems = builder.problems
    return doc


class _Builder:
    def __init__(self, doc: Document):
        self.doc = doc
        self.count = 0
        self.problems: list[Problem] = []
        self.scalars = yaml.constructor.SafeConstructor()

    def fail(self, node: yaml.Node, message: str, loc: Loc | None = None) -> None:
        self.problems.append(Problem(self.doc.path, message, node.start_mark.line + 1))
        if loc is not None:
            self.doc.unreadable.add(loc)

    def bad_tag(self, node: yaml.Node) -> None:
        tag = node.tag.replace(_CORE, "!!")
        self.fail(node, f"tag {tag} is not allowed (only plain YAML values: no Python objects or custom tags)")

    def build(self, node: yaml.Node, loc: Loc, depth: int) -> Any:
        self.count += 1
        if self.count > MAX_NODES:
            raise ProblemsError(
                [Problem(self.doc.path, f"aliases expand to more than {MAX_NODES} values", node.start_mark.line + 1)]
            )
        if depth > MAX_DEPTH:
            raise ProblemsError(
                [Problem(self.doc.path, f"nested deeper than {MAX_DEPTH} levels", node.start_mark.line + 1)]
            )
        if isinstance(node, yaml.MappingNode):
            return self.mapping(node, loc, depth)
        if isinstance(node, yaml.SequenceNode):
            if node.tag != _CORE + "seq":
                self.bad_tag(node)
                return None
            out = []
            for i, item in enumerate(node.value):
                self.doc.lines.setdefault((*loc, i), item.start_mark.line + 1)
                out.append(self.build(item, (*loc, i), depth + 1))
            return out
        if node.tag not in _SCALAR_TAGS:
            self.bad_tag(node)
            return None
        if isinstance(node, yaml.ScalarNode) and not node.style:  # plain (None from PyYAML, "" from LibYAML): YAML 1.2
            return self.core(node, loc)
        value = self.scalars.construct_object(node)
        if isinstance(value, datetime.date):  # dates are text to us, as written
            return node.value
        return value

    def core(self, node: yaml.ScalarNode, loc: Loc = ()) -> Any:
        text = node.value
        if node.tag != _RESOLVER.resolve(yaml.ScalarNode, text, (True, False)):  # an explicit tag: as written
            value = self.scalars.construct_object(node)
            return text if isinstance(value, datetime.date) else value
        if _NULL.fullmatch(text):
            return None
        if _TRUE.fullmatch(text) or _FALSE.fullmatch(text):
            return bool(_TRUE.fullmatch(text))
        if _INT.fullmatch(text):
            digits = text.lstrip("+-")
            if len(digits) > 1 and digits.startswith("0"):
                self.fail(node, f"{text}: {LEADING_ZERO}", loc)
                return None
            return int(text)
        if _OCT.fullmatch(text):
            return int(text[2:], 8)
        if _HEX.fullmatch(text):
            return int(text[2:], 16)
        if _FLOAT.fullmatch(text):
            return float(text)
        if _INF.fullmatch(text):
            return -math.inf if text.startswith("-") else math.inf
        if _NAN.fullmatch(text):
            return math.nan
        return text

    def mapping(self, node: yaml.MappingNode, loc: Loc, depth: int) -> dict | None:
        if node.tag != _CORE + "map":
            self.bad_tag(node)
            return None
        out: dict = {}
        first_line: dict = {}
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            if key_node.tag == _CORE + "merge":
                self.fail(key_node, "merge keys ('<<') are not supported; write the values out")
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                self.fail(key_node, "a key must be a plain value, not a list or mapping")
                continue
            key = self.build(key_node, loc, depth + 1)
            if key in first_line:
                where = ".".join(str(p) for p in (*loc, key))
                self.problems.append(
                    Problem(self.doc.path, f"duplicate key (first at line {first_line[key]})", line, where)
                )
                continue
            first_line[key] = line
            self.doc.lines[(*loc, key)] = line
            out[key] = self.build(value_node, (*loc, key), depth + 1)
        return out
