"""The .pt2 intake's look before torch opens an archive: hand-made zips and pickle streams (nothing is
unpickled), each refused for the reason it was built to show, or let through. Fast: the mutation run
of toolkit/archives.py runs this file once per mutant."""

from __future__ import annotations

import io
import json
import os
import pickle
import zipfile
from collections import OrderedDict

import pytest

from edge_distill.archives import allowed_imports, check_pt2, imports_of, weights_only_loads
from edge_distill.errors import BadInput

SYSTEM = f"{os.system.__module__}.system"  # posix.system on Linux: what a pickle of os.system names


def _zip(path, entries: dict[str, bytes], compression=zipfile.ZIP_STORED):
    with zipfile.ZipFile(path, "w", compression) as z:
        for name, data in entries.items():
            z.writestr(name, data)
    return path


# -- reading a pickle's imports without running it -------------------------------------------------

@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_imports_of_every_protocol(protocol):
    stream = pickle.dumps([os.system, OrderedDict, os.system, os.getcwd], protocol=protocol)
    found = imports_of(stream)
    assert set(found) == {SYSTEM, "collections.OrderedDict", f"{os.getcwd.__module__}.getcwd"}


def test_names_memoized_with_put_and_got_back_are_followed():
    # protocol-0 text ops: push "posix", PUT 0, push "system", PUT 1, GET 0, GET 1, STACK_GLOBAL
    stream = b"Vposix\np0\nVsystem\np1\ng0\ng1\n\x93."
    assert imports_of(stream) == ["posix.system"]
    # MEMOIZE (protocol 4) numbers the memo by its size; BINGET reads it back
    stream = b"\x80\x04\x8c\x05posix\x94\x8c\x06system\x94h\x00h\x01\x93."
    assert imports_of(stream) == ["posix.system"]
    # INST imports as GLOBAL does
    assert imports_of(b"(iposix\nsystem\n.") == ["posix.system"]


@pytest.mark.parametrize("stream, why", [
    (b"\x80\x04K\x01K\x02\x93.", "an import whose name is computed at load time"),
    (b"\x80\x04\x8c\x05posix\x93.", "an import whose name is computed at load time"),  # one string only
    (b"\x80\x04\x8c\x05posixK\x01\x93.", "an import whose name is computed at load time"),
    (b"\x80\x04\xff", "not a well-formed pickle"),
    (b"\x80\x04\x8c\x05pos", "not a well-formed pickle"),
])
def test_an_import_that_cannot_be_read_is_an_error(stream, why):
    with pytest.raises(ValueError, match=why):
        imports_of(stream)


def test_a_get_of_nothing_memoized_is_not_a_name():
    # BINGET 7 was never PUT: what it pushes is unknown, so the import after it is computed
    with pytest.raises(ValueError, match="computed at load time"):
        imports_of(b"\x80\x04\x8c\x05posixh\x07\x93.")
    with pytest.raises(ValueError, match="computed at load time"):  # a PUT before any string memoizes nothing
        imports_of(b"\x80\x04\x94\x8c\x06systemh\x00\x93.")


def test_the_allow_list_is_torchs_weights_only_table():
    allowed = allowed_imports()
    assert "torch._utils._rebuild_tensor_v2" in allowed and "collections.OrderedDict" in allowed
    assert not {SYSTEM, "os.system", "nt.system", "builtins.eval", "builtins.exec", "subprocess.Popen"} & allowed


# -- whole archives -----------------------------------------------------------------------------------

def _clean_entries() -> dict[str, bytes]:
    return {"m/archive_format": b"pt2", "m/version": b"1", "m/.data/": b"",
            "m/models/model.json": b"{}", "m/data/sample_inputs/x.pt": pickle.dumps(OrderedDict(a=1), protocol=2)}


def test_a_clean_archive_passes(tmp_path):
    assert check_pt2(_zip(tmp_path / "ok.pt2", _clean_entries())) is None


@pytest.mark.parametrize("name", ["/etc/passwd", "\\evil", "m/../../evil", "..\\evil", "c:/evil", "C:evil"])
def test_an_entry_outside_the_archive_is_refused(tmp_path, name):
    path = _zip(tmp_path / "m.pt2", {**_clean_entries(), name: b"x"})
    with pytest.raises(BadInput, match=f"archive entry '{name.replace(chr(92), chr(92) * 2)}' points outside"):
        check_pt2(path)


def test_a_pickle_that_imports_code_is_refused_naming_entry_and_import(tmp_path):
    path = _zip(tmp_path / "m.pt2", {**_clean_entries(), "m/data/constants/c.pt": pickle.dumps([os.system, eval])})
    with pytest.raises(BadInput) as refused:
        check_pt2(path)
    assert str(refused.value) == (f"{path}: archive entry 'm/data/constants/c.pt' is a pickle that imports "
                                  f"builtins.eval, {SYSTEM}, which could run code when loaded; refused\n"
                                  "  hint: a file you made yourself and trust loads with --trust-pickle")


@pytest.mark.parametrize("module", ["os", "posix", "nt", "subprocess"])
def test_a_hand_written_import_of_a_shell_is_refused(tmp_path, module):
    # GLOBAL 'os system' written by hand: any module's name for system(), not only this platform's
    stream = f"c{module}\nsystem\n(S'id'\ntR.".encode()
    path = _zip(tmp_path / "m.pt2", {**_clean_entries(), "m/data/sample_inputs/y.pt": stream})
    with pytest.raises(BadInput, match=f"'m/data/sample_inputs/y.pt' is a pickle that imports {module}.system, "):
        check_pt2(path)


def test_an_entry_that_is_no_pickle_is_refused(tmp_path):
    path = _zip(tmp_path / "m.pt2", {**_clean_entries(), "m/data/x": b"\xff\xfe garbage"})
    with pytest.raises(BadInput, match="archive entry 'm/data/x' cannot be checked: not a well-formed pickle"):
        check_pt2(path)


def test_a_torch_save_zip_inside_is_read_entry_by_entry(tmp_path):
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as z:
        z.writestr("archive/version", b"3")
        z.writestr("archive/data.pkl", pickle.dumps(os.system))
    path = _zip(tmp_path / "m.pt2", {**_clean_entries(), "m/data/weights/w.pt": inner.getvalue()})
    with pytest.raises(BadInput, match=f"'m/data/weights/w.pt -> archive/data.pkl' is a pickle that imports {SYSTEM}"):
        check_pt2(path)
    # a damaged inner zip is read as the stream it is
    path = _zip(tmp_path / "d.pt2", {**_clean_entries(), "m/w.pt": b"PK\x03\x04 damaged"})
    with pytest.raises(BadInput, match="archive entry 'm/w.pt' cannot be checked"):
        check_pt2(path)


def test_raw_tensor_payloads_the_config_declares_are_not_read_as_pickles(tmp_path):
    config = {"config": {"w": {"path_name": "weight_0", "use_pickle": False},
                         "c": {"path_name": "weight_1", "use_pickle": True}}}
    entries = {**_clean_entries(), "m/data/weights/model_weights_config.json": json.dumps(config).encode(),
               "m/data/weights/weight_0": b"\x00\x01raw float bytes \xff"}
    assert check_pt2(_zip(tmp_path / "ok.pt2", entries)) is None
    # the same bytes under a name the config says is pickled are read, and refused
    entries["m/data/weights/weight_1"] = b"\x00\x01raw float bytes \xff"
    with pytest.raises(BadInput, match="archive entry 'm/data/weights/weight_1' cannot be checked"):
        check_pt2(_zip(tmp_path / "m.pt2", entries))
    # constants are declared the same way; a config that is no JSON declares nothing
    constants = {"config": {"k": {"path_name": "constant_0", "use_pickle": False}}}
    entries = {**_clean_entries(), "m/data/constants/model_constants_config.json": json.dumps(constants).encode(),
               "m/data/constants/constant_0": b"\xff raw"}
    assert check_pt2(_zip(tmp_path / "k.pt2", entries)) is None
    entries["m/data/constants/model_constants_config.json"] = b"not json"
    with pytest.raises(BadInput, match="'m/data/constants/constant_0' cannot be checked"):
        check_pt2(_zip(tmp_path / "n.pt2", entries))


def test_not_a_zip_is_refused(tmp_path):
    path = tmp_path / "m.pt2"
    path.write_bytes(b"not a zip")
    with pytest.raises(BadInput, match="not a torch.export archive \\(a .pt2 is a zip\\)"):
        check_pt2(path)
    with pytest.raises(BadInput, match="not a torch.export archive"):
        check_pt2(tmp_path / "missing.pt2")


def test_an_entry_that_does_not_inflate_is_refused(tmp_path):
    path = _zip(tmp_path / "m.pt2", {**_clean_entries(), "m/data/x.pt": pickle.dumps(1) * 50},
                zipfile.ZIP_DEFLATED)
    data = bytearray(path.read_bytes())
    start = data.index(b"m/data/x.pt") + len("m/data/x.pt")  # the local header's name, then the deflated bytes
    data[start:start + 8] = b"\xff" * 8
    path.write_bytes(bytes(data))
    with pytest.raises(BadInput, match="archive entry 'm/data/x.pt' cannot be read"):
        check_pt2(path)


def test_a_zip_bomb_is_refused_before_unpacking(tmp_path):
    # 65 MiB of zeros deflate to about 64 KB: over 64 MiB declared and over 200 times the file's size
    path = _zip(tmp_path / "bomb.pt2", {**_clean_entries(), "m/big": bytes(65 << 20)}, zipfile.ZIP_DEFLATED)
    size = path.stat().st_size
    declared = (65 << 20) + sum(len(v) for v in _clean_entries().values())
    with pytest.raises(BadInput) as refused:
        check_pt2(path)
    assert str(refused.value) == (f"{path}: the archive's entries declare {declared:,} bytes unpacked from {size:,} "
                                  f"on disk (entry 'm/big' alone {65 << 20:,}): not a model's weights; refused before "
                                  "unpacking")


def test_large_but_not_a_bomb_passes_the_size_look(tmp_path):
    # 65 MiB of random-looking bytes stored: over 64 MiB declared but about its size on disk (ratio 1)
    payload = bytes(range(256)) * (65 << 12)
    config = {"config": {"w": {"path_name": "w0", "use_pickle": False}}}
    path = _zip(tmp_path / "big.pt2", {**_clean_entries(), "m/model_weights_config.json": json.dumps(config).encode(),
                                       "m/w0": payload})
    assert check_pt2(path) is None
    # and a small archive that inflates 1000-fold stays under SMALL: not refused
    small = _zip(tmp_path / "s.pt2", {**_clean_entries(), "m/z": b"", "m/model_weights_config.json":
                                      json.dumps({"config": {"z": {"path_name": "zeros", "use_pickle": False}}}).encode(),
                                      "m/zeros": bytes(1 << 20)}, zipfile.ZIP_DEFLATED)
    with pytest.raises(BadInput, match="'m/z' cannot be checked"):  # the empty entry: read, and no pickle
        check_pt2(small)


def test_weights_only_loads_sets_and_restores_the_switch(monkeypatch):
    monkeypatch.delenv("TORCH_FORCE_WEIGHTS_ONLY_LOAD", raising=False)
    with weights_only_loads():
        assert os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] == "1"
    assert "TORCH_FORCE_WEIGHTS_ONLY_LOAD" not in os.environ
    monkeypatch.setenv("TORCH_FORCE_WEIGHTS_ONLY_LOAD", "0")
    with pytest.raises(RuntimeError), weights_only_loads():
        assert os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] == "1"
        raise RuntimeError("the load failed")
    assert os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] == "0"
