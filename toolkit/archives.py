"""Untrusted torch.export archives (.pt2): looked at before torch opens them.

A .pt2 is a zip. torch.export.load unpickles parts of it: the sample inputs, pickled weights and
constants (with `weights_only=False`, or falling back to it when the safe loader fails) and opaque
objects (plain `pickle.loads`). A crafted archive therefore runs code on load. So, unless the user
passes --trust-pickle:

- every entry name must stay inside the archive (no absolute path, no `..`);
- every entry torch may unpickle (everything but the JSON configs, the version markers and the raw
  tensor payloads those configs declare) is read opcode by opcode, without executing anything, and
  may import only what torch's own weights-only loader allows (tensors, storages, dtypes, plain
  containers). Anything else refuses the file, naming the entry and the import.

The load itself then runs with TORCH_FORCE_WEIGHTS_ONLY_LOAD=1, so no torch.load inside it can fall
back to full unpickling.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import pickletools
import zipfile
from pathlib import Path, PurePosixPath

from .errors import BadInput
from .limits import memory_bound, raise_hint

# Entries that hold no pickle: version markers and the configs (read as JSON by torch).
_PLAIN_NAMES = {"archive_format", "archive_version", "byteorder", "version", "serialization_id", ".format_version",
                ".storage_alignment"}
_STRING_OPS = {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "SHORT_BINSTRING", "BINSTRING", "STRING"}


def allowed_imports() -> set[str]:
    """What torch's weights-only unpickler accepts, as "module.name" (the table torch itself uses)."""
    from torch._weights_only_unpickler import _get_allowed_globals

    return set(_get_allowed_globals())


def imports_of(stream: bytes) -> list[str]:
    """Every module.name a pickle stream imports, read without running it. A stream that does not
    parse to its end, or an import whose name is not two plain strings pushed just before it,
    raises ValueError."""
    found: list[str] = []
    recent: list[str | None] = []  # what each op pushed, a string or None for anything else
    memo: dict[object, str | None] = {}
    ops = pickletools.genops(io.BytesIO(stream))
    while True:
        try:
            op, arg, _ = next(ops)
        except StopIteration:
            return found
        except Exception as exc:  # pickletools raises several types for a stream that is not a pickle
            raise ValueError(f"not a well-formed pickle ({exc})") from exc
        name = op.name
        if name in _STRING_OPS:
            recent.append(arg if isinstance(arg, str) else str(arg))
        elif name in ("BINPUT", "LONG_BINPUT", "PUT"):
            memo[arg] = recent[-1] if recent else None
        elif name == "MEMOIZE":
            memo[len(memo)] = recent[-1] if recent else None
        elif name in ("BINGET", "LONG_BINGET", "GET"):
            recent.append(memo.get(arg))
        elif name in ("GLOBAL", "INST"):
            module, _, attr = str(arg).partition(" ")  # GLOBAL's argument is "module name"
            found.append(f"{module}.{attr}")
            recent.append(None)
        elif name == "STACK_GLOBAL":
            if len(recent) < 2 or None in recent[-2:]:
                raise ValueError("an import whose name is computed at load time")
            found.append(f"{recent[-2]}.{recent[-1]}")
            recent.append(None)
        elif name not in ("FRAME", "PROTO"):  # every other op leaves something unknown on top
            recent.append(None)


def _raw_payloads(archive: zipfile.ZipFile, path: Path) -> set[str]:
    """Entries the archive's own configs declare as raw tensor bytes (never unpickled)."""
    raw = set()
    for name in archive.namelist():
        if not name.endswith(("model_weights_config.json", "model_constants_config.json")):
            continue
        try:
            config = json.loads(_entry_bytes(archive, name, path))["config"]
        except (ValueError, KeyError, TypeError):
            continue
        folder = str(PurePosixPath(name).parent)
        raw |= {f"{folder}/{meta['path_name']}" for meta in config.values()
                if isinstance(meta, dict) and meta.get("use_pickle") is False and "path_name" in meta}
    return raw


def _pickles(name: str, data: bytes):
    """(label, stream) of the pickles in one entry: itself, or the .pkl files of a torch.save zip."""
    if data[:4] == b"PK\x03\x04":
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as inner:
                for inner_name in inner.namelist():
                    if inner_name.endswith(".pkl"):
                        yield f"{name} -> {inner_name}", inner.read(inner_name)
        except (zipfile.BadZipFile, ValueError):  # a damaged inner zip (a garbled name raises UnicodeDecodeError)
            yield name, data
        return
    yield name, data


def _entry_bytes(archive: zipfile.ZipFile, name: str, path: Path) -> bytes:
    """An entry's bytes as torch reads them: its reader checks no CRC, so neither does this look (a
    damaged entry is then torch's to refuse, with its reason; what it would unpickle is checked)."""
    import zlib

    try:
        with archive.open(name) as entry:
            # zipfile's own switch for "no CRC to check", on the ZipExtFile typeshed calls IO[bytes]
            entry._expected_crc = None  # type: ignore[attr-defined]
            return entry.read()
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:  # a compressed entry that does not inflate
        raise BadInput(f"archive entry '{name}' cannot be read ({exc}); refused", path=path) from exc


MAX_RATIO, SMALL = 200, 64 << 20  # a .pt2 stores its weights uncompressed: its contents are about its size


def _refuse_a_bomb(archive: zipfile.ZipFile, path: Path) -> None:
    """Refuse, from the zip's own headers and before reading an entry, an archive that unpacks to more
    than the machine's bound (`limits.memory_bound`) or to more than MAX_RATIO times its size (beyond
    SMALL bytes): a few MB that expand to gigabytes."""
    declared = sum(info.file_size for info in archive.infolist())
    size = path.stat().st_size
    if declared > memory_bound():
        raise BadInput(f"the archive's entries declare {declared:,} bytes unpacked, more than the {memory_bound():,} "
                       "one file may take on this machine; refused before unpacking", path=path, hint=raise_hint())
    if declared > SMALL and declared > MAX_RATIO * size:
        largest = max(archive.infolist(), key=lambda info: info.file_size)
        raise BadInput(f"the archive's entries declare {declared:,} bytes unpacked from {size:,} on disk "
                       f"(entry '{largest.filename}' alone {largest.file_size:,}): not a model's weights; refused "
                       "before unpacking", path=path)


def check_pt2(path: Path) -> None:
    """Refuse (BadInput, exit 2) a .pt2 that escapes its archive or would run code when loaded."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise BadInput(f"not a torch.export archive (a .pt2 is a zip): {exc}", path=path) from exc
    allowed = allowed_imports()
    with archive:
        _refuse_a_bomb(archive, path)
        for name in archive.namelist():
            parts = PurePosixPath(name.replace("\\", "/")).parts
            if name.startswith(("/", "\\")) or ".." in parts or (parts and ":" in parts[0]):
                raise BadInput(f"archive entry '{name}' points outside the archive; refused", path=path)
        raw = _raw_payloads(archive, path)
        for name in archive.namelist():
            base = PurePosixPath(name).name
            if name in raw or base in _PLAIN_NAMES or name.endswith(("/", ".json")):
                continue
            for label, stream in _pickles(name, _entry_bytes(archive, name, path)):
                try:
                    imports = imports_of(stream)
                except ValueError as exc:
                    raise BadInput(f"archive entry '{label}' cannot be checked: {exc}; refused", path=path,
                                   hint="a file you made yourself and trust loads with --trust-pickle") from exc
                unsafe = sorted(set(imports) - allowed)
                if unsafe:
                    raise BadInput(f"archive entry '{label}' is a pickle that imports {', '.join(unsafe)}, which "
                                   "could run code when loaded; refused", path=path,
                                   hint="a file you made yourself and trust loads with --trust-pickle")


@contextlib.contextmanager
def weights_only_loads():
    """Every torch.load inside runs with weights_only=True, whatever its caller asked for."""
    previous = os.environ.get("TORCH_FORCE_WEIGHTS_ONLY_LOAD")
    os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = "1"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("TORCH_FORCE_WEIGHTS_ONLY_LOAD", None)
        else:
            os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = previous
