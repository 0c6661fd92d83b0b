"""Pydantic validation errors turned into located problems: `file:line: field: message`.

Shared by the experiment files and the registry policy; light (no TensorFlow, no MLflow).
"""

from __future__ import annotations

import re
import typing
from typing import Any

from pydantic import BaseModel, ValidationError

from flowops import yamlfile
from flowops.errors import Problem
from flowops.suggest import did_you_mean

# Fields whose value names one of a list (a problem suggests the nearest); a template's schema
# registers its own when it is imported (`register_choices`), so the engine lists none of them.
_CHOICES: dict[str, tuple[str, ...]] = {"mode": ("enabled", "dry_run", "disabled")}


# Fields that take a word or a mapping (a union): field -> (the mapping's model, what to say of
# any other value); registered by a template's schema (`register_union`).
_UNIONS: dict[str, tuple[str, str]] = {}


def register_choices(**fields: tuple[str, ...]) -> None:
    """Name-the-choice fields of a template's schema: `unknown backbone 'resnet81'; did you mean ...`."""
    _CHOICES.update(fields)


def register_union(field: str, mapping: str, message: str) -> None:
    """A field that is a word or a mapping of model `mapping`: a problem in the mapping is reported in
    it; any other value gets `message` (`must be 'x' or a mapping ...`)."""
    _UNIONS[field] = (mapping, message)


_TYPE_WORDS = {
    "int_type": "an integer",
    "int_parsing": "an integer",
    "float_type": "a number",
    "bool_type": "true or false",
    "string_type": "text",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
}
_BOUNDS = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=", "less_than": "<"}
_PATTERNS = {"name": "1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"}


EXCERPT = 40  # characters of a value a message may quote: an excerpt, never a whole file's text


def show(value: Any) -> str:
    """A value as the user wrote it in YAML (a long text cut to an excerpt)."""
    if isinstance(value, str) and len(value) > EXCERPT:
        return repr(value[: EXCERPT - 10]) + f"... ({len(value)} characters)"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value) if isinstance(value, str) else str(value)


def problems_from(doc: yamlfile.Document, exc: ValidationError, model: type[BaseModel]) -> list[Problem]:
    """Turn pydantic errors into `file:line: field: message` problems."""
    out = []
    for err in exc.errors():
        loc = _clean_loc(err["loc"], doc.data)
        if loc is None:
            continue
        out.append(Problem(doc.path, _message(err, loc, model), doc.line_of(loc), where(loc)))
    # One message per place is enough (a union reports each of its branches).
    unique = list(dict.fromkeys(out))
    return sorted(unique, key=lambda p: p.line or 0)


def where(loc: tuple) -> str:
    return ".".join(str(p) if isinstance(p, str) else f"[{p}]" for p in loc).replace(".[", "[")


def _clean_loc(loc: tuple, data: Any) -> tuple | None:
    """Drop pydantic's union-branch names from the location; None to skip the error."""
    if len(loc) >= 2 and loc[0] in _UNIONS:
        field, mapping = loc[0], _UNIONS[loc[0]][0]
        given = data.get(field) if isinstance(data, dict) else None
        branch = loc[1]
        if isinstance(given, dict):  # the user meant a mapping: report only that branch
            return None if branch != mapping else (field, *loc[2:])
        return (field,) if branch != mapping else None
    return tuple(p for p in loc if p != "[key]")  # a bad dict key is reported at the key


def _message(err: Any, loc: tuple, model: type[BaseModel]) -> str:
    kind, value, ctx = err["type"], err.get("input"), err.get("ctx") or {}
    field = loc[-1] if loc else ""
    if len(loc) == 1 and loc[0] in _UNIONS and kind == "literal_error":
        return f"{_UNIONS[loc[0]][1]} (got {show(value)})"
    if kind == "missing":
        return "required field is missing"
    if kind == "extra_forbidden":
        known = _fields_at(loc[:-1], model)
        hint = did_you_mean(field, known)
        return f"unknown key{hint}" if hint else f"unknown key; known keys: {', '.join(known)}"
    if kind in _BOUNDS:
        bound = next(iter(ctx.values()))
        return f"must be {_BOUNDS[kind]} {bound} (got {show(value)})"
    if kind == "literal_error" and str(field) not in _CHOICES:  # a dict's value (metrics: {rmse: ...})
        allowed = re.findall(r"'([^']*)'", str(ctx.get("expected", "")))
        means = {"lower": "min", "higher": "max", "minimize": "min", "maximize": "max"}.get(str(value).lower())
        said = f"; {means!r} means {value} is better" if means in allowed else ""
        return f"must be {' or '.join(allowed) or 'one of the listed values'} (got {show(value)}){said}"
    if kind == "literal_error":
        choices = _CHOICES.get(str(field), ())
        listed = (
            ", ".join(choices) if len(choices) <= 6 else f"one of the {len(choices)} names in experiments/schema.json"
        )
        return f"unknown {field} {show(value)}{did_you_mean(value, choices)}; expected {listed}"
    if kind in _TYPE_WORDS:
        return f"must be {_TYPE_WORDS[kind]} (got {show(value)})"
    if kind == "finite_number":
        return f"must be a finite number (got {show(value)})"
    if kind == "string_too_short":
        return "must not be empty"
    if kind == "string_too_long":
        return f"must be at most {ctx['max_length']} characters (got {len(value)})"
    if kind == "too_short":
        return f"must list at least {ctx['min_length']} item(s) (got {ctx.get('actual_length', 0)})"
    if kind == "too_long":
        return f"must list at most {ctx['max_length']} item(s) (got {ctx.get('actual_length')})"
    if kind == "string_pattern_mismatch" and err["loc"][-1] == "[key]" and loc[:1] == ("targets",):
        return f"alias names are lowercase letters, digits, '_' or '-', starting with a letter (got {show(value)})"
    if kind == "string_pattern_mismatch":
        return f"must be {_PATTERNS.get(str(field), 'text matching ' + ctx['pattern'])} (got {show(value)})"
    if kind == "value_error":
        return str(ctx.get("error", err["msg"]))
    return f"{err['msg'][0].lower()}{err['msg'][1:]} (got {show(value)})"


def _fields_at(loc: tuple, model: type[BaseModel]) -> list[str]:
    """Field names of the (nested) model at `loc`; dict keys and list indexes step into their values."""
    current: Any = model
    for part in loc:
        inner = _inner_model(current)
        if inner is not None and part in inner.model_fields:
            current = inner.model_fields[part].annotation
    found = _inner_model(current)
    return list(found.model_fields) if found else []


def _inner_model(annotation: Any) -> type[BaseModel] | None:
    """The BaseModel inside Optional[...], list[...], dict[..., ...] or a union, if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _inner_model(arg)
        if found is not None:
            return found
    return None
