"""Fill a JSON template with settings, keeping it valid JSON before and after.

Hand-rolled on purpose (a few lines over string.Template): templating engines
work on text, and a placeholder in a number's position would make the template
itself invalid JSON, which `aws ... --cli-input-json` and editors then reject.
Here the template is parsed first and filled value by value:

- a string that is exactly `${name}` becomes the setting's value with its type
  (a number stays a number, a list a list);
- `${name}` inside a longer string is replaced by the value's text;
- an object with `"$if": "name"` is kept (without that key) only when the
  setting is non-empty, and dropped from its list or parent otherwise;
- a key whose value is exactly `${name}` is left out when the value is OMIT (a
  key ECS takes in one rendering and refuses in another, as a service's launchType
  beside its capacityProviderStrategy);
- in a template rendered once per role (the task role policy), an object with
  `"$roles": [...]` is kept (without that key) only in the renderings of the
  roles it lists.

Errors name the file and the JSON path of the placeholder.
"""

from __future__ import annotations

import json
import re
import string
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from entrypoint.errors import ConfigError

_WHOLE = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")
_DROP = object()
OMIT = _DROP  # a value that leaves its key (or list item) out
_KEYWORDS = ("$if", "$roles")


def load_template(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not JSON: {exc.msg} at line {exc.lineno} column "
                          f"{exc.colno}") from None


def fill(template: Any, values: Mapping[str, Any], source: str) -> Any:
    """Return the filled copy of template; raise ConfigError naming every bad placeholder."""
    problems: list[str] = []
    out = _fill(template, values, source, "$", problems)
    if problems:
        raise ConfigError(problems)
    return out


def json_path(parent: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{parent}[{key}]"
    return f"{parent}.{key}" if re.fullmatch(r"[A-Za-z_$][A-Za-z0-9_\-]*", key) \
        else f"{parent}[{json.dumps(key)}]"


def _for_role(roles: Any, values: Mapping[str, Any], source: str, path: str,
              problems: list[str]) -> bool:
    """Whether an object with `$roles` is kept in this rendering."""
    role, known = values.get("template_role"), values.get("template_roles", ())
    if not role:
        problems.append(f"{source}: {path}: only templates rendered per role take $roles")
        return False
    if not isinstance(roles, list) or not roles or any(r not in known for r in roles):
        problems.append(f"{source}: {path}: must list roles among {', '.join(known)}, got "
                        f"{roles!r}")
        return False
    return role in roles


def _fill(node: Any, values: Mapping[str, Any], source: str, path: str,
          problems: list[str]) -> Any:
    if isinstance(node, dict):
        condition = node.get("$if")
        if condition is not None:
            if condition not in values:
                problems.append(f"{source}: {json_path(path, '$if')}: unknown setting "
                                f"{condition!r}")
                return _DROP
            if not values[condition]:
                return _DROP
        if "$roles" in node and not _for_role(node["$roles"], values, source,
                                              json_path(path, "$roles"), problems):
            return _DROP
        out = {}
        for key, value in node.items():
            if key in _KEYWORDS:
                continue
            filled = _fill(value, values, source, json_path(path, key), problems)
            if filled is not _DROP:
                out[key] = filled
        return out
    if isinstance(node, list):
        filled_items = (_fill(item, values, source, json_path(path, i), problems)
                        for i, item in enumerate(node))
        return [item for item in filled_items if item is not _DROP]
    if isinstance(node, str):
        whole = _WHOLE.match(node)
        if whole:
            name = whole.group(1)
            if name not in values:
                problems.append(f"{source}: {path}: unknown placeholder ${{{name}}}")
                return node
            return values[name]
        try:
            return string.Template(node).substitute(
                {k: v for k, v in values.items() if isinstance(v, str | int)})
        except KeyError as exc:
            problems.append(f"{source}: {path}: unknown placeholder ${{{exc.args[0]}}}")
        except ValueError:
            problems.append(f"{source}: {path}: malformed placeholder in {node!r} "
                            "(write ${name}, or $$ for a literal $)")
        return node
    return node
