"""Profiles: `init` writes a valid commented profile; bad ones fail naming the key."""

from __future__ import annotations

import pytest

from ptychoflow.errors import ProfileError
from ptychoflow.profile import PROFILE_FILENAME, load_profile, write_local_profile


def test_init_writes_valid_profile_and_site_dirs(tmp_path):
    path = write_local_profile(tmp_path)
    profile = load_profile(tmp_path)
    assert path.name == PROFILE_FILENAME and profile.backend == "local"
    assert profile.resolve(profile.beamline.path) == (tmp_path / "acquisition").resolve()
    assert all((tmp_path / d).is_dir() for d in ("acquisition", "hpc", "edge", "state"))
    assert "# " in path.read_text()  # commented for humans


def test_init_refuses_to_overwrite(tmp_path):
    write_local_profile(tmp_path)
    with pytest.raises(ProfileError, match="already exists"):
        write_local_profile(tmp_path)
    write_local_profile(tmp_path, force=True)


@pytest.mark.parametrize(
    ("edit", "key", "reason"),
    [
        (("max_active_runs = 2", "max_active_runs = 0"), "watcher.max_active_runs", "greater than or equal to 1"),
        (("patch_size = 64", "patch_size = 96"), "policy.patch_size", "must be 64 or 128"),
        (("engine = \"auto\"", "engine = \"gpu-magic\""), "policy.engine", "Input should be"),
        (("[hpc]", "[hpc]\nbogus = 1"), "hpc.bogus", "Extra inputs are not permitted"),
        (("path = \"acquisition\"\n", ""), "beamline.path", "Field required"),
        (("backend = \"local\"", "backend = \"cloud\""), "backend", "Input should be"),
    ],
)
def test_invalid_profile_is_one_line_naming_the_key(tmp_path, edit, key, reason):
    path = write_local_profile(tmp_path)
    path.write_text(path.read_text().replace(*edit, 1))
    with pytest.raises(ProfileError) as info:
        load_profile(path)
    message = str(info.value)
    assert message.startswith(f"{path}: {key}: ") and reason in message and "\n" not in message


def test_broken_toml_and_missing_file(tmp_path):
    bad = tmp_path / PROFILE_FILENAME
    bad.write_text("backend = [unclosed")
    with pytest.raises(ProfileError, match=r"\(toml\)"):
        load_profile(bad)
    with pytest.raises(ProfileError, match="ptychoflow init"):
        load_profile(tmp_path / "nowhere")
