"""The one config mechanism: pydantic sections read from YAML, with dotted overrides.

Every entry point (train, eval, demo, video, the matching and cut-fidelity experiments, the
benchmarks) describes its settings as a :class:`Section` subclass and reads them with
:func:`load_config`. Sections are frozen, reject unknown keys and do not coerce across types
(YAML ``true`` is not an int, ``'10'`` is not an int); ints widen to floats and YAML lists
become tuples. Any problem raises one :class:`ConfigError` naming the dotted key and the file
or override it came from, as ``<file> (override 'k=v'): model.grouping.gamma: <reason>``.
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, TypeVar, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError

__all__ = [
    "ConfigError",
    "Section",
    "Tuple",
    "config_from_dict",
    "load_config",
    "parse_override",
    "save_config",
    "to_dict",
    "with_overrides",
]

S = TypeVar("S", bound="Section")


class ConfigError(ValueError):
    """An invalid configuration value; ``key`` is the dotted key, ``source`` the file/override."""

    def __init__(self, key: str, reason: str, source: str | None = None) -> None:
        self.key, self.reason, self.source = key, reason, source
        where = f"{source}: " if source else ""
        super().__init__(f"{where}{key}: {reason}" if key else f"{where}{reason}")

    def within(self, prefix: str = "", source: str | None = None) -> ConfigError:
        """The same error with ``prefix`` prepended to its key and/or a source attached."""
        key = f"{prefix}.{self.key}" if prefix and self.key else (prefix or self.key)
        return ConfigError(key, self.reason, source or self.source)


def _as_tuple(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


T = TypeVar("T")
# A YAML list read as a tuple (strict mode accepts only real tuples): ``Tuple[float]``.
Tuple = Annotated[tuple[T, ...], BeforeValidator(_as_tuple)]


class Section(BaseModel):
    """A config section: frozen, no unknown keys, no cross-type coercion, no NaN or inf.

    Constructing one in Python validates it like a YAML file does and raises
    :class:`ConfigError` naming the key.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as err:
            raise _config_error(err, type(self), data) from None


# --------------------------------------------------------------------------------------------
# pydantic errors -> ConfigError
# --------------------------------------------------------------------------------------------


def _sections(annotation: Any) -> list[type[Section]]:
    """The Section classes an annotation allows (one, or the members of a tagged union)."""
    if isinstance(annotation, type) and issubclass(annotation, Section):
        return [annotation]
    if get_origin(annotation) is Annotated:
        return _sections(get_args(annotation)[0])
    if get_origin(annotation) is Union or type(annotation).__name__ == "UnionType":
        return [s for a in get_args(annotation) for s in _sections(a)]
    return []


def _walk(schema: type[Section], raw: Any, loc: Sequence[Any]) -> tuple[list[str], type[Section] | None]:
    """The dotted key of a pydantic ``loc`` (union tags dropped) and the section it ends in."""
    keys: list[str] = []
    section: type[Section] | None = schema
    tags: dict[str, type[Section]] = {}  # kind -> member, when the last key was a tagged union
    node = raw
    for part in loc:
        if isinstance(part, int):
            keys[-1] += f"[{part}]"
            continue
        if part in tags and not (isinstance(node, Mapping) and part in node):
            section = tags[part]  # the tag pydantic puts in the loc of a tagged union's member
            tags = {}
            continue
        keys.append(str(part))
        field = section.model_fields.get(str(part)) if section is not None else None
        node = node.get(part) if isinstance(node, Mapping) else None
        options = _sections(field.annotation) if field is not None else []
        tags = {str(s.model_fields["kind"].default): s for s in options if "kind" in s.model_fields}
        section = options[0] if options else None
    return keys, section


def _reason(error: Mapping[str, Any], section: type[Section] | None) -> str:
    kind, value = error["type"], error.get("input")
    context = error.get("ctx") or {}
    if kind == "extra_forbidden" and section is not None:
        return f"unknown key (valid keys: {', '.join(section.model_fields)})"
    if kind == "missing":
        return "required key is missing"
    if kind == "model_type" or kind == "model_attributes_type":
        return f"expected a mapping, got {type(value).__name__} {value!r}"
    if kind == "union_tag_invalid":
        return f"expected one of {context.get('expected_tags')}, got {context.get('tag')!r}"
    if kind == "value_error" and isinstance(context.get("error"), ValueError):
        return str(context["error"])  # a validator's own message, which shows the value
    return f"{error['msg']}, got {type(value).__name__} {value!r}"


def _config_error(err: ValidationError, schema: type[Section], raw: Any, source: str | None = None) -> ConfigError:
    """The first error of a ValidationError as a ConfigError naming its dotted key."""
    error = err.errors()[0]
    keys, section = _walk(schema, raw, error["loc"])
    cause = (error.get("ctx") or {}).get("error")
    if isinstance(cause, ConfigError):  # a cross-field check that names its own key
        return cause.within(".".join(keys), source)
    if error["type"] == "extra_forbidden":  # the section is the one holding the unknown key
        _, section = _walk(schema, raw, error["loc"][:-1])
    if error["type"] == "union_tag_invalid":
        keys.append("kind")
    return ConfigError(".".join(keys), _reason(error, section), source)


def validate(schema: type[S], raw: Any, source: str | None = None) -> S:
    """``schema`` built from plain data; a problem raises ConfigError naming key and source."""
    if not isinstance(raw, Mapping):
        raise ConfigError("", f"expected a mapping at the top level, got {type(raw).__name__}", source)
    try:
        return schema.model_validate(raw)
    except ValidationError as err:
        raise _config_error(err, schema, raw, source) from None
    except ConfigError as err:
        raise err.within(source=source) from None


# --------------------------------------------------------------------------------------------
# YAML reading / writing, overrides
# --------------------------------------------------------------------------------------------


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys and reads YAML 1.2 floats such as ``4e-4``."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


# PyYAML follows YAML 1.1, where `4e-4` (no dot) is a *string*; accept the YAML 1.2 form.
_StrictLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def _load_yaml(text: str, source: str) -> Any:
    try:
        return yaml.load(text, Loader=_StrictLoader)
    except yaml.YAMLError as err:
        raise ConfigError("", f"invalid YAML: {err}", source) from err


_KEY = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*")


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"train.steps=100"`` -> ``(["train", "steps"], 100)``; the value is read as YAML."""
    if not isinstance(text, str):
        raise TypeError(f"overrides: expected strings like 'train.steps=100', got {text!r}")
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not _KEY.fullmatch(key):
        raise ConfigError("", f"bad override {text!r}: expected 'section.key=value'")
    if not value.strip():
        raise ConfigError(key, f"bad override {text!r}: empty value (write {key}=null for None)")
    return key.split("."), _load_yaml(value, f"override {text!r}")


def _check_override_key(schema: type[Section], path: list[str], value: Any, where: str) -> None:
    """Fail early, naming the override, when its key is not a field of the schema; a section
    is replaced only by a mapping (``'model.grouping={kind: slot_attention}'``)."""
    options: list[type[Section]] = [schema]
    for depth, name in enumerate(path):
        key = ".".join(path[: depth + 1])
        fields = {f: s.model_fields[f] for s in options for f in s.model_fields}
        if name not in fields:
            raise ConfigError(key, f"unknown key (valid keys: {', '.join(fields)})", where)
        options = _sections(fields[name].annotation)
        if depth < len(path) - 1 and not options:
            raise ConfigError(key, "is not a section, so it has no sub-keys", where)
    if options and not isinstance(value, dict):
        raise ConfigError(
            ".".join(path), "is a section; override one of its keys, or give a mapping to replace it", where
        )


def _apply_override(raw: dict[str, Any], keys: list[str], value: Any, where: str) -> None:
    node = raw
    for depth, name in enumerate(keys[:-1]):
        child = node.setdefault(name, {})
        if not isinstance(child, dict):
            raise ConfigError(".".join(keys[: depth + 1]), "is not a mapping in the file", where)
        node = child
    node[keys[-1]] = value


def load_config(
    path: str | os.PathLike[str], overrides: Sequence[str] | None = None, *, schema: type[S], upgrade: Any = None
) -> S:
    """Read ``schema`` from a YAML file, then apply dotted ``key=value`` overrides.

    ``upgrade(raw, source) -> raw`` converts older layouts before the overrides apply. Raises
    FileNotFoundError for a missing file and ConfigError (a ValueError) naming the key and the
    file, or the offending override, for anything else.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    source = str(path)
    raw = _load_yaml(path.read_text(encoding="utf-8"), source)
    if not isinstance(raw, dict):
        raise ConfigError("", f"expected a mapping at the top level, got {type(raw).__name__}", source)
    if upgrade is not None:
        raw = upgrade(raw, source)
    return with_overrides(raw, overrides, schema=schema, source=source)


def with_overrides(raw: dict[str, Any], overrides: Sequence[str] | None, *, schema: type[S], source: str) -> S:
    """``schema`` from ``raw`` (e.g. ``{}`` for the schema's defaults) with dotted ``key=value``
    overrides applied; errors name the key and ``source``, or the offending override."""
    if isinstance(overrides, str):
        raise TypeError(f"overrides: expected a list of 'key=value' strings, got str {overrides!r}")
    raw = copy.deepcopy(raw)
    origin: dict[str, str] = {}  # dotted key -> override text, to blame overrides for bad values
    for text in overrides or []:
        where = f"{source} (override {text!r})"
        try:
            keys, value = parse_override(text)
        except ConfigError as err:
            raise err.within(source=where) from None
        _check_override_key(schema, keys, value, where)
        _apply_override(raw, keys, value, where)
        origin[".".join(keys)] = text
    try:
        return validate(schema, raw)
    except ConfigError as err:
        blamed = next((t for k, t in origin.items() if err.key == k or err.key.startswith((f"{k}[", f"{k}."))), None)
        raise err.within(source=f"{source} (override {blamed!r})" if blamed else source) from None


def config_from_dict(raw: Any, *, schema: type[S], source: str = "<dict>") -> S:
    """``schema`` from plain data (e.g. the copy in a checkpoint); errors name ``source``."""
    return validate(schema, raw, source)


def to_dict(config: Section) -> dict[str, Any]:
    """A config as plain YAML-safe Python (tuples become lists)."""
    if not isinstance(config, Section):
        raise TypeError(f"config: expected a config Section, got {type(config)!r}")
    return config.model_dump(mode="json")


def save_config(config: Section, path: str | os.PathLike[str]) -> Path:
    """Write ``config`` as YAML that :func:`load_config` reads back to an equal config."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(to_dict(config), sort_keys=False), encoding="utf-8")
    return path
