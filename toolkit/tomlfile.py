"""Reading TOML strictly: a misspelled key is an error that names it, never ignored."""

from __future__ import annotations

import difflib
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

from .errors import BadInput


def read_toml(path: Path) -> dict:
    if not path.is_file():
        raise BadInput("file not found", path=path)
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise BadInput(f"not valid TOML: {exc}", path=path) from exc
    except RecursionError:  # arrays or tables nested thousands deep: no configuration is
        raise BadInput("not a configuration: its arrays or tables are nested too deep to read", path=path) from None


def check_keys(table: dict, allowed: set[str] | dict, where: str, path: Path) -> None:
    for key in table:
        if key not in allowed:
            close = difflib.get_close_matches(key, list(allowed), n=1)
            hint = f"did you mean '{close[0]}'?" if close else f"allowed keys: {', '.join(sorted(allowed))}"
            raise BadInput(f"unknown key '{key}' in [{where}]", path=path, hint=hint)


def expect(value, types, key: str, where: str, path: Path):
    if isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
        ok = False
    else:
        ok = isinstance(value, types)
    if not ok:
        names = " or ".join(t.__name__ for t in (types if isinstance(types, tuple) else (types,)))
        raise BadInput(f"'{key}' in [{where}] must be {names}, got {value!r}", path=path)
    return value
