"""YAML files and command-line values -> config dataclasses: the one loader every CLI uses.

A config is a dataclass with one documented field per setting. :func:`read_yaml_mappings` merges
``--config`` files in order (later files win); :func:`build_config` checks the keys against the
dataclass, converts each value to its field's annotated type (``int | None``, ``bool``, tuples,
lists) and constructs it; :func:`config_from_files_and_flags` adds ``--field value`` flags for
every field on top (flags win over files). The training stages parse TRL's own configs with
``transformers.HfArgumentParser`` over the same :func:`read_yaml_mappings`.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import types
import typing
from pathlib import Path
from typing import Any, Callable, Iterable

import yaml

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def read_yaml_mappings(files: Iterable[str | Path]) -> dict[str, Any]:
    """Merge YAML mappings in order (later keys win).

    Raises ValueError naming a file that is not a mapping or not valid YAML; OSError when a
    file cannot be read.
    """
    merged: dict[str, Any] = {}
    for file in files:
        try:
            data = yaml.safe_load(Path(file).read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as err:
            raise ValueError(f"{file}: not valid YAML: {err}") from None
        if not isinstance(data, dict):
            raise ValueError(f"{file}: a config file must be a YAML mapping of field: value")
        merged.update(data)
    return merged


def parse_bool(text: str | bool) -> bool:
    """``true``/``false`` (also 1/0, yes/no, on/off) -> bool; raises ValueError otherwise."""
    if isinstance(text, bool):
        return text
    key = str(text).strip().lower()
    if key in _TRUE:
        return True
    if key in _FALSE:
        return False
    raise ValueError(f"expected true or false, got {text!r}")


def _field_types(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def coerce(value: Any, annotation: Any, name: str = "value") -> Any:
    """``value`` (from YAML or a command-line string) as ``annotation``.

    Handles ``X | None`` (``none``/``null`` -> None), bool, int, float, str, ``list[...]`` and
    ``tuple[...]`` (a YAML list, a JSON list string or a comma-separated string) and dicts.
    Raises ValueError naming ``name`` when the value does not fit.
    """
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.strip().lower() in ("none", "null")):
            if type(None) in args:
                return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return coerce(value, arg, name)
            except ValueError as err:
                errors.append(str(err))
        raise ValueError(f"{name}: {value!r} fits none of {annotation}: {'; '.join(errors)}")
    if annotation is Any:
        return value
    if annotation is bool:
        try:
            return parse_bool(value)
        except ValueError as err:
            raise ValueError(f"{name}: {err}") from None
    if annotation in (int, float, str):
        if annotation is int and isinstance(value, float) and not value.is_integer():
            raise ValueError(f"{name}: expected an integer, got {value!r}")
        if annotation in (int, float) and isinstance(value, bool):
            raise ValueError(f"{name}: expected a number, got {value!r}")
        try:
            return annotation(value)
        except (TypeError, ValueError):
            raise ValueError(f"{name}: expected {annotation.__name__}, got {value!r}") from None
    if origin in (list, tuple) or annotation in (list, tuple):
        if isinstance(value, str):
            text = value.strip()
            value = json.loads(text) if text.startswith("[") else \
                [v.strip() for v in text.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{name}: expected a list, got {value!r}")
        item = args[0] if args and (origin is list or (len(args) == 2 and args[1] is Ellipsis)) \
            else None
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            if len(args) != len(value):
                raise ValueError(f"{name}: expected {len(args)} values, got {value!r}")
            items = [coerce(v, a, name) for v, a in zip(value, args)]
        else:
            items = [coerce(v, item, name) if item is not None else v for v in value]
        return tuple(items) if (origin is tuple or annotation is tuple) else items
    if origin is dict or annotation is dict:
        if isinstance(value, str):
            value = json.loads(value)
        if not isinstance(value, dict):
            raise ValueError(f"{name}: expected a mapping, got {value!r}")
        return value
    return value


def build_config(cls, values: dict[str, Any], source: str = "config"):
    """``cls(**values)`` with unknown keys refused and every value converted to its field type.

    Raises ValueError listing unknown keys (and the valid ones) or naming a value that does not
    fit its field.
    """
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise ValueError(f"unknown {cls.__name__} field(s) {unknown} in {source}; "
                         f"valid fields: {names}")
    hints = _field_types(cls)
    return cls(**{k: coerce(v, hints[k], k) for k, v in values.items()})


def _flag_parser(annotation: Any, name: str) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            return coerce(text, annotation, name)
        except (ValueError, json.JSONDecodeError) as err:
            raise argparse.ArgumentTypeError(str(err)) from None
    return parse


def add_dataclass_flags(parser: argparse.ArgumentParser, cls) -> None:
    """One ``--field value`` flag per init field of ``cls`` (default None = not given)."""
    hints = _field_types(cls)
    for f in dataclasses.fields(cls):
        if f.init:
            parser.add_argument(f"--{f.name}", type=_flag_parser(hints[f.name], f.name),
                                default=None, metavar=f.name.upper(),
                                help=f"({hints[f.name]}; see {cls.__name__})")


def config_from_files_and_flags(cls, config_files: list[str], argv: list[str],
                                prog: str | None = None):
    """``cls`` from merged YAML ``config_files``, then ``--field value`` flags in ``argv``.

    Raises ValueError (unknown key, bad value) or SystemExit from argparse for a bad flag.
    """
    values = read_yaml_mappings(config_files)
    parser = argparse.ArgumentParser(prog=prog or cls.__name__)
    add_dataclass_flags(parser, cls)
    flags = {k: v for k, v in vars(parser.parse_args(argv)).items() if v is not None}
    return build_config(cls, {**values, **flags}, source=", ".join(map(str, config_files))
                        or "flags")
