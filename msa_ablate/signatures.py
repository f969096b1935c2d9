"""Every key of every config node typed by what reads it: a node with a ``_target_`` by the signature of
the callable it names (its keys are that callable's keyword arguments; those the code fills, such as
``dim``, are absent), a plain group by its schema. A value of another type (``model.input_bias=off``)
or a key that is no parameter (``+model.input_biass=true``) is a ConfigError, before anything trains.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Union

from hydra._internal.utils import _locate  # what instantiate imports a _target_ with (get_object logs too)
from omegaconf import DictConfig, OmegaConf

from msa_ablate.errors import ConfigError, is_int, suggest

HYDRA_KEYS = {"_target_", "_partial_", "_recursive_", "_convert_", "_args_"}


def check_types(cfg: DictConfig, plain_groups: Mapping[str, type]) -> None:
    """Each value of the job's ``cfg`` (Hydra's node left out), resolved, against its annotation;
    ``plain_groups``: the dataclass typing each group that has no ``_target_``, checked first (model
    keys interpolate them, and the error should name the key that was set)."""
    values = OmegaConf.to_container(cfg, resolve=True)
    for group, schema in plain_groups.items():
        if isinstance(values.get(group), dict):
            check_node(group, values[group], typing.get_type_hints(schema), takes_any_key=False)
    check_targets("", values)


def check_targets(key: str, value: object) -> None:
    """Every node under ``value`` (at dotted ``key``) that names a ``_target_``, against its signature."""
    if isinstance(value, dict):
        if "_target_" in value:
            check_node(key, value, *parameter_types(key, value["_target_"]))
        for name, item in value.items():
            check_targets(f"{key}.{name}" if key else str(name), item)
    elif isinstance(value, list):
        for item in value:
            check_targets(key, item)


def parameter_types(key: str, target: str) -> tuple[dict[str, object], bool]:
    """The annotation of each keyword parameter of ``target`` (Any where it has none), and whether it takes **kwargs."""
    try:
        function = _locate(target)
    except ImportError:
        raise ConfigError(f"{key}._target_={target}: no such function or class") from None
    parameters = inspect.signature(function).parameters.values()
    hints = typing.get_type_hints(function.__init__ if isinstance(function, type) else function)
    keywords = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return ({p.name: hints.get(p.name, Any) for p in parameters if p.kind in keywords},
            any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters))


def check_node(key: str, node: Mapping, types_by_name: Mapping[str, object], takes_any_key: bool) -> None:
    """Each key of ``node`` (at dotted ``key``) a name of ``types_by_name`` (unless ``takes_any_key``),
    its value of that name's type."""
    for name, value in node.items():
        if name in HYDRA_KEYS:
            continue
        if name not in types_by_name:
            if not takes_any_key:
                raise ConfigError(f"{key}.{name}: no such setting{suggest(f'{key}.{name}', types_by_name)}")
        elif not conforms(value, types_by_name[name]):
            raise ConfigError(f"{key}.{name}={value}: must be {described(types_by_name[name])}")


def conforms(value: object, annotation: object) -> bool:
    """Whether a config value (plain containers: dict, list) is of the type ``annotation`` says."""
    origin, args = typing.get_origin(annotation) or annotation, typing.get_args(annotation)
    if annotation is Any:
        return True
    if origin in (Union, types.UnionType):
        return any(conforms(value, a) for a in args)
    if annotation in (None, type(None)):
        return value is None
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return is_int(value)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if origin is Callable:  # a part the config builds: a node of its own, checked by check_targets
        return isinstance(value, dict) and "_target_" in value
    if isinstance(origin, type) and issubclass(origin, Mapping):
        return isinstance(value, dict) and (not args or all(conforms(v, args[1]) for v in value.values()))
    if origin is tuple and args and args[-1] is not Ellipsis:
        return isinstance(value, list) and len(value) == len(args) and all(map(conforms, value, args))
    if isinstance(origin, type) and issubclass(origin, Sequence) and origin is not str:
        return isinstance(value, list) and (not args or all(conforms(v, args[0]) for v in value))
    return isinstance(origin, type) and isinstance(value, origin)


def described(annotation: object) -> str:
    """``annotation`` in the words of an error message: "true or false", "an integer or null"."""
    origin, args = typing.get_origin(annotation) or annotation, typing.get_args(annotation)
    if origin in (Union, types.UnionType):
        return " or ".join(described(a) for a in args)
    words = {type(None): "null", bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    if annotation in words:
        return words[annotation]
    if origin is Callable:
        return "a config node with a _target_"
    if isinstance(origin, type) and issubclass(origin, Mapping):
        return f"a mapping {{name: {described(args[1])}}}" if args else "a mapping"
    if origin is tuple and args and args[-1] is not Ellipsis:
        return f"a list [{', '.join(map(described, args))}]"
    if isinstance(origin, type) and issubclass(origin, Sequence):
        return f"a list [{described(args[0])}, ...]" if args else "a list"
    return f"a {getattr(annotation, '__name__', annotation)}"
