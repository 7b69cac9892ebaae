"""Reading a pipeline file safely: it is user input, and may be hostile or simply wrong.

Only a regular file is read (a FIFO would block forever, /dev/zero never end), at most
MAX_CONFIG_BYTES. YAML is composed into its node graph first and refused before construction when
aliases would expand it beyond MAX_NODES (the "billion laughs"), when an alias refers to itself,
or when it nests deeper than MAX_DEPTH; JSON gets the same size and depth bounds after parsing.
Every refusal is a ConfigError (exit 2) that says which bound was hit.
"""

from __future__ import annotations

import json
import os
import re
import stat
from typing import Any

from .errors import ConfigError

MAX_CONFIG_BYTES = 1 << 20
MAX_NODES = 100_000
MAX_DEPTH = 64


def read_config_bytes(path: str | os.PathLike[str]) -> bytes:
    """The file's bytes; a ConfigError for anything that is not a regular file of sane size."""
    where = str(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise ConfigError("", f"cannot read pipeline file: {exc.strerror or exc}", source=where) from None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ConfigError("", "the pipeline file is not a regular file", source=where)
        data = f.read(MAX_CONFIG_BYTES + 1)
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError("", f"the pipeline file is larger than {MAX_CONFIG_BYTES // 1024} KiB; a pipeline is a "
                              "few lines", source=where)
    return data


def _yaml_size(root: Any) -> None:
    """Refuse a composed YAML graph whose expansion is too large, too deep, or recursive."""
    import yaml

    size: dict[int, int] = {}
    stack: list[tuple[Any, int, bool]] = [(root, 1, False)]
    active: set[int] = set()
    while stack:
        node, depth, done = stack.pop()
        if depth > MAX_DEPTH:
            raise ValueError(f"nested deeper than {MAX_DEPTH} levels")
        key = id(node)
        if done:
            active.discard(key)
            _no_duplicate_keys(node, yaml)
            children = _children(node, yaml)
            size[key] = 1 + sum(size[id(c)] for c in children)
            if size[key] > MAX_NODES:
                raise ValueError(f"expands to more than {MAX_NODES} values (YAML aliases?)")
            continue
        if key in size:
            continue
        if key in active:
            raise ValueError("an alias refers to the node that contains it (a recursive structure)")
        active.add(key)
        stack.append((node, depth, True))
        stack.extend((c, depth + 1, False) for c in _children(node, yaml) if id(c) not in size)


def _no_duplicate_keys(node: Any, yaml: Any) -> None:
    """YAML takes the last of two equal keys silently (`copies: 2` ... `copies: 3`): refuse it."""
    if not isinstance(node, yaml.MappingNode):
        return
    seen: set[str] = set()
    for k, _ in node.value:
        if isinstance(k, yaml.ScalarNode) and k.tag != "tag:yaml.org,2002:merge":
            if k.value in seen:
                raise ValueError(f"key {k.value!r} appears twice in one mapping (line {k.start_mark.line + 1})")
            seen.add(k.value)


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """json.loads hook: two equal keys in one object are an error, not 'the last wins'."""
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"key {k!r} appears twice in one object")
        out[k] = v
    return out


def _children(node: Any, yaml: Any) -> list[Any]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _check_plain(data: Any) -> None:
    """The same bounds on an already parsed (JSON) value."""
    count = 0
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        count += 1
        if depth > MAX_DEPTH:
            raise ValueError(f"nested deeper than {MAX_DEPTH} levels")
        if count > MAX_NODES:
            raise ValueError(f"has more than {MAX_NODES} values")
        if isinstance(value, dict):
            stack.extend((v, depth + 1) for kv in value.items() for v in kv)
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value)


# YAML 1.1 (PyYAML) reads an exponent without a dot or a sign (`1e3`, `1.0e3`) as text; YAML 1.2
# and JSON read it as a number, and so does every user who types `--rotation-range 1e1`.
_EXPONENT = r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"
_LOADER: Any = None
_TEXT_KEY_TAGS = {f"tag:yaml.org,2002:{t}" for t in ("int", "float", "bool", "null")}


def yaml_loader() -> Any:
    """yaml.SafeLoader that also reads exponent forms as floats (built once, on first use)."""
    global _LOADER
    if _LOADER is None:
        import yaml

        class Loader(yaml.SafeLoader):
            def construct_mapping(self, node: Any, deep: bool = False) -> Any:
                """Keys stay the text they were written as: `01:` and `1:`, `no:` and `false:` are
                different class names (as folders), never the number 1 or False twice."""
                if isinstance(node, yaml.MappingNode):
                    for key, _ in node.value:
                        if isinstance(key, yaml.ScalarNode) and key.tag in _TEXT_KEY_TAGS:
                            key.tag = "tag:yaml.org,2002:str"
                return super().construct_mapping(node, deep)

        Loader.add_implicit_resolver("tag:yaml.org,2002:float", re.compile(_EXPONENT), list("-+0123456789."))
        _LOADER = Loader
    return _LOADER


def load_yaml(text: str) -> Any:
    """`yaml.safe_load` with exponent forms read as floats (flag values, small snippets)."""
    import yaml

    return yaml.load(text, Loader=yaml_loader())  # noqa: S506 (a SafeLoader subclass)


def parse_config(text: str, json_file: bool) -> Any:
    """Parse YAML or JSON text within the bounds; parser errors propagate as they are."""
    if json_file:
        data = json.loads(text, object_pairs_hook=_unique_pairs)
        _check_plain(data)
        return data
    loader = yaml_loader()(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _yaml_size(node)
        return loader.construct_document(node)
    finally:
        loader.dispose()
