"""Names from data never choose a path; the site layout answers every path."""

from __future__ import annotations

from pathlib import Path

import pytest

from ptychoflow.errors import InputError
from ptychoflow.names import inside, printable, safe_component
from ptychoflow.site import EdgeLayout, HpcLayout, collection_path, site_arguments, staged_dir


@pytest.mark.parametrize("name", ["scan_0001", "v0003", "S1.run-2+a=b@c,d", "a" * 128])
def test_safe_names_pass_unchanged(name: str) -> None:
    assert safe_component(name, source="x.h5", field="scan_id") == name


@pytest.mark.parametrize("name", ["", ".", "..", "../x", "a/b", "/abs", "a\\b", "-rf", ".hidden", "a..b",
                                  "x\x00y", "line\nforged", "\x1b[31mred", "a" * 129, "sp ace", 7, None])
def test_unsafe_names_are_refused_naming_file_and_field(name: object) -> None:
    with pytest.raises(InputError) as info:
        safe_component(name, source="scan_0001.h5", field="/entry@scan_id")
    message = str(info.value)
    assert message.startswith("scan_0001.h5: /entry@scan_id: ")
    assert "\n" not in message and "\x1b" not in message


def test_inside_refuses_escapes(tmp_path: Path) -> None:
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "out").symlink_to(tmp_path)
    assert inside(tmp_path / "site", "a/b", source="in.json", field="f") == (tmp_path / "site" / "a" / "b").resolve()
    for bad in ("/etc/passwd", "../x", "a/../../x", "out/x", "a\x00b"):
        with pytest.raises(InputError, match=r"in.json: f: "):
            inside(tmp_path / "site", bad, source="in.json", field="f")


def test_printable_escapes_control_characters() -> None:
    assert printable("scan\n2026-01-01 INFO forged\x1b[2J") == "scan\\n2026-01-01 INFO forged\\x1b[2J"
    assert printable("plain µm") == "plain µm"


def test_layouts_put_data_names_below_their_site(tmp_path: Path) -> None:
    hpc = HpcLayout(tmp_path / "hpc")
    assert hpc.products_dir("scan_0001") == tmp_path / "hpc" / "products" / "scan_0001"
    assert hpc.scan_file("scan_0001.h5").parent == hpc.scans_dir
    assert staged_dir(hpc.registry_dir, "v0002") == tmp_path / "hpc" / "registry" / "staged" / "v0002"
    for bad in ("../x", "/tmp/x"):
        with pytest.raises(InputError):
            hpc.products_dir(bad)
        with pytest.raises(InputError):
            staged_dir(hpc.registry_dir, bad)
    edge = EdgeLayout(tmp_path / "edge")
    assert {edge.model_dir.name, edge.staging_dir.name, edge.mosaics_dir.name, edge.status_file.name} == {
        "model", "staging", "mosaics", "edge-status.json"}
    assert collection_path("products", "scan_0001") == "/products/scan_0001"


def test_remote_function_arguments_resolve_every_path_inside_the_site(tmp_path: Path) -> None:
    """Paths (``_dir``, ``_path``) and lists of paths (``_dirs``, ``_paths``) from a flow are
    resolved inside the site root; an escape anywhere in a list is refused naming its index."""
    (tmp_path / "registry").mkdir()
    root, resolved = site_arguments(str(tmp_path), {"registry_dir": "registry", "probe_guess_path": "g.npy",
                                                    "reuse_from_dirs": ["old/registry"], "epochs": 3}, source="train")
    assert root == tmp_path.resolve()
    assert resolved == {"registry_dir": root / "registry", "probe_guess_path": root / "g.npy",
                        "reuse_from_dirs": [root / "old" / "registry"], "epochs": 3}
    for name, value, field in (("probe_guess_path", "/etc/passwd", "probe_guess_path"),
                               ("reuse_from_dirs", ["ok", "../../other-site/registry"], r"reuse_from_dirs\[1\]"),
                               ("reuse_from_dirs", "registry", "reuse_from_dirs")):
        with pytest.raises(InputError, match=rf"^train: {field}: "):
            site_arguments(str(tmp_path), {name: value}, source="train")
