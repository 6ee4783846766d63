"""Reading a person's YAML file into a typed model, with errors that name file, field and reason.

Shared by every file format Firebreak reads (topologies, policies, drill scenarios): the YAML
layer reports syntax errors with their line and duplicate keys; the pydantic layer reports
wrong types, unknown fields and bad values, translated into plain sentences with a suggestion
where a near match exists.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any, Iterable, TypeVar

import yaml
import yaml_rs
from pydantic import BaseModel, ValidationError

from firebreak.errors import InputError, Problem

M = TypeVar("M", bound=BaseModel)

# Site and service names become directory names, network namespace names, etcd keys and cookie
# names: one safe shape for all of them, checked before any becomes a path.
NAME_PATTERN = r"^[a-z][a-z0-9-]{0,30}$"
_NAME = re.compile(NAME_PATTERN)
NAME_RULE = ("must be 1-31 characters: lowercase letters, digits and '-', starting with a letter "
             "(names become file, network and key names)")


def bad_name(name: object) -> str | None:
    """Why `name` is not a valid site or service name, or None when it is."""
    if not isinstance(name, str) or not _NAME.match(name):
        return f"{name!r} {NAME_RULE}"
    return None


def suggest(word: str, choices: Iterable[str]) -> str:
    """' (did you mean 'x'?)' when a choice is close to word, else ''."""
    choices = [str(c) for c in choices]
    match = difflib.get_close_matches(str(word), choices, n=1, cutoff=0.6)
    if not match and len(str(word)) >= 3:
        # an abbreviation: 'taxi' for 'taxi_driver'
        match = [c for c in choices if c.startswith(str(word))][:1] if \
            len([c for c in choices if c.startswith(str(word))]) == 1 else []
    return f" (did you mean '{match[0]}'?)" if match else ""


def field_path(loc: Iterable[Any]) -> str:
    """('services', 'login', 'depends_on', 0) -> 'services.login.depends_on[0]'."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def read_text(path: Path, label: str | None = None) -> str:
    label = label or str(path)
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(Problem(label, "", "file not found; check the path")) from None
    except IsADirectoryError:
        raise InputError(Problem(label, "", "is a directory, expected a YAML file")) from None
    except UnicodeDecodeError as e:
        raise InputError(Problem(label, "", f"not UTF-8 text ({e.reason} at byte {e.start})")) from None
    except OSError as e:
        raise InputError(Problem(label, "", f"cannot read: {e.strerror}")) from None


def parse_yaml(text: str, label: str) -> tuple[Any, "Lines"]:
    """Parse YAML safely. Returns the data and a map from field path to 1-based line.

    The fast path is yaml-rs (a Rust parser, YAML 1.2 core schema: `yes` and `on` are text, not
    true): a 10,000-service topology parses in well under a tenth of a second, where PyYAML's
    loader plus a walk of every node for line numbers took ten. Line numbers are only needed
    when something is wrong, so they are computed lazily, from PyYAML's composed nodes, the
    first time anyone asks for one. Syntax errors and duplicate keys, which yaml-rs reports
    without a usable position, are re-read by PyYAML for the line and column."""
    try:
        data = yaml_rs.loads(text, parse_datetime=True)
    except yaml_rs.YAMLDecodeError as e:
        _explain_yaml(text, label)  # raises with the line when PyYAML can place the problem
        raise InputError(Problem(label, "", f"YAML error: {str(e).splitlines()[-1].strip()}")) from None
    except (ValueError, OverflowError, RecursionError) as e:
        raise InputError(Problem(label, "", f"YAML error: {e}")) from None
    if data is None:
        raise InputError(Problem(label, "", "file is empty; expected a YAML mapping"))
    return data, Lines(text)


class Lines:
    """Field path -> 1-based line, computed on first use (see parse_yaml)."""

    def __init__(self, text: str):
        self._text = text
        self._lines: dict[tuple, int] | None = None

    def get(self, path: tuple, default: int | None = None) -> int | None:
        if self._lines is None:
            self._lines = _line_map(self._text)
        return self._lines.get(path, default)


def _compose(text: str) -> yaml.Node | None:
    loader = yaml.CSafeLoader(text) if hasattr(yaml, "CSafeLoader") else yaml.SafeLoader(text)
    try:
        return loader.get_single_node()
    finally:
        loader.dispose()


def _line_map(text: str) -> dict[tuple, int]:
    try:
        node = _compose(text)
    except yaml.YAMLError:
        return {}
    lines: dict[tuple, int] = {}
    if node is not None:
        _walk(node, (), lines, [], "")
    return lines


def _explain_yaml(text: str, label: str) -> None:
    """Raise InputError naming the line of a syntax error or a duplicate key, if PyYAML finds one."""
    try:
        node = _compose(text)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        what = " ".join(x for x in (e.context, e.problem) if x)
        raise InputError(Problem(label, "", f"{where}YAML syntax error: {what}", mark.line + 1 if mark else None)) from None
    except yaml.YAMLError as e:
        raise InputError(Problem(label, "", f"YAML error: {e}")) from None
    if node is not None:
        problems: list[Problem] = []
        _walk(node, (), {}, problems, label)
        if problems:
            raise InputError(problems)


def _walk(node: yaml.Node, path: tuple, lines: dict[tuple, int], problems: list[Problem], label: str) -> None:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            key = _key(key_node.value)
            line = key_node.start_mark.line + 1
            if key in seen:
                problems.append(Problem(label, field_path(path + (key,)),
                                        f"duplicate key (first on line {seen[key]}, again on line {line})", line))
            seen[key] = line
            _walk(value_node, path + (key,), lines, problems, label)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _walk(item, path + (i,), lines, problems, label)


def _key(value: Any) -> Any:
    # A scalar key's text; yaml-rs gives integer-looking keys as ints, so paths match either way.
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return value


_TYPE_NAMES = {str: "text", int: "a whole number", float: "a number", bool: "true/false",
               list: "a list", dict: "a mapping", type(None): "nothing (null)"}


def _describe(value: Any) -> str:
    name = _TYPE_NAMES.get(type(value), type(value).__name__)
    if isinstance(value, (dict, list)):
        return name
    return f"{name} {value!r}"


def _known_fields(model: type[BaseModel], loc: tuple) -> list[str]:
    """The field names valid at loc (whose last part is the unknown field), by walking the model."""
    current: Any = model
    for part in loc[:-1]:
        if isinstance(current, type) and issubclass(current, BaseModel):
            info = current.model_fields.get(str(part))
            if info is None:
                return []
            current = info.annotation
        else:
            # a container: dict[str, X] or list[X]; step into X
            args = getattr(current, "__args__", ())
            current = args[-1] if args else None
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def _num(x: Any) -> Any:
    return int(x) if isinstance(x, float) and x.is_integer() else x


def _clean_loc(loc: Iterable[Any]) -> tuple:
    """Drop pydantic's bookkeeping from an error path: dict-key markers and union tags (<...>)."""
    return tuple(p for p in loc if p != "[key]" and not (isinstance(p, str) and p.startswith("<")))


def translate(err: dict, model: type[BaseModel]) -> str:
    """One pydantic error as a sentence a person can act on."""
    kind, value, ctx = err["type"], err.get("input"), err.get("ctx") or {}
    loc = _clean_loc(err["loc"])
    if kind == "extra_forbidden":
        known = _known_fields(model, loc)
        hint = suggest(str(loc[-1]), known) or (f" (known fields: {', '.join(known)})" if known else "")
        return f"unknown field{hint}"
    if kind == "missing":
        return "required field is missing"
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return f"expected a whole number, got {_describe(value)}"
    if kind in ("string_type",):
        return f"expected text, got {_describe(value)}"
    if kind in ("float_type", "float_parsing"):
        return f"expected a number, got {_describe(value)}"
    if kind in ("bool_type", "bool_parsing"):
        return f"expected true or false, got {_describe(value)}"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return f"expected a mapping, got {_describe(value)}"
    if kind in ("list_type", "tuple_type", "set_type"):
        return f"expected a list, got {_describe(value)}"
    if kind == "greater_than_equal":
        return f"must be {_num(ctx.get('ge'))} or more, got {value!r}"
    if kind == "greater_than":
        return f"must be more than {_num(ctx.get('gt'))}, got {value!r}"
    if kind == "less_than_equal":
        return f"must be {_num(ctx.get('le'))} or less, got {value!r}"
    if kind == "less_than":
        return f"must be less than {_num(ctx.get('lt'))}, got {value!r}"
    if kind in ("too_short", "string_too_short"):
        return "must not be empty" if not value else err["msg"].lower()
    if kind in ("literal_error", "enum"):
        expected = ctx.get("expected", "")
        choices = [c.strip().strip("'") for c in expected.replace(" or ", ",").split(",") if c.strip()]
        return f"must be one of {', '.join(choices)}; got {value!r}{suggest(str(value), choices)}"
    if kind == "step_kind":
        return err["msg"]
    if kind == "value_error":
        return str(ctx.get("error", err["msg"]))
    return err["msg"]


def validate(model: type[M], data: Any, label: str, lines: "Lines | dict[tuple, int] | None" = None) -> M:
    """Validate data against model, raising InputError with one Problem per pydantic error."""
    try:
        return model.model_validate(data)
    except ValidationError as e:
        problems = []
        for err in e.errors(include_url=False):
            loc = _clean_loc(err["loc"])
            problems.append(Problem(label, field_path(loc), translate(err, model),
                                    (lines or {}).get(loc)))
        raise InputError(problems) from None


def load_yaml_model(path: Path | str, model: type[M], label: str | None = None) -> tuple[M, Lines]:
    """Read, parse and structurally validate a YAML file into model."""
    path = Path(path)
    label = label or str(path)
    text = read_text(path, label)
    data, lines = parse_yaml(text, label)
    if not isinstance(data, dict):
        raise InputError(Problem(label, "", f"expected a YAML mapping at the top, got {_describe(data)}"))
    return validate(model, data, label, lines), lines
