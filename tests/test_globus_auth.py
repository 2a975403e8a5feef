"""Credentials: one clear error when missing, owner-only token files, nothing secret in output."""

from __future__ import annotations

import json
import logging
import stat

import globus_sdk
import pytest
from globus_sdk.testing import RegisteredResponse, load_response

from globus_support import CLIENT_ID, SECRET_TOKEN, make_profile, mocked_http, seed_tokens, write_profile  # noqa: F401
from ptychoflow.backends.globus.auth import OwnerOnlyJSONTokenStorage, build_app, resolve_identity, token_file
from ptychoflow.cli.main import main
from ptychoflow.errors import CredentialsError

SERVICE_SECRET = "service-client-SECRET-never-print"
USERINFO = {"sub": "ae341a98-d274-11e5-b888-dbae3a8ba545", "preferred_username": "scientist@anl.gov", "name": "Ada Scientist", "email": "ada@anl.gov"}


@pytest.fixture
def token_dir(tmp_path, monkeypatch):
    directory = tmp_path / "tokens"
    monkeypatch.setenv("PTYCHOFLOW_TOKEN_DIR", str(directory))
    return directory


def run_cli(args, capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
        raise SystemExit(0)
    out = capsys.readouterr()
    return exit_info.value.code, out.out, out.err


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_missing_client_is_one_clear_error(tmp_path, token_dir, capsys):
    write_profile(tmp_path, client_id=None)
    with pytest.raises(CredentialsError, match="no Globus client configured"):
        resolve_identity(make_profile(tmp_path, client_id=None))
    code, out, err = run_cli(["whoami", "--profile", str(tmp_path)], capsys)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "PTYCHOFLOW_CLIENT_ID" in err


def test_secret_without_id_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("PTYCHOFLOW_CLIENT_SECRET", SERVICE_SECRET)
    with pytest.raises(CredentialsError) as err:
        resolve_identity(make_profile(tmp_path))
    assert SERVICE_SECRET not in str(err.value)


def test_not_logged_in_names_the_login_command(tmp_path, token_dir, capsys):
    write_profile(tmp_path)
    code, out, err = run_cli(["whoami", "--profile", str(tmp_path)], capsys)
    assert code == 2 and "not logged in" in err and "ptychoflow login" in err


def test_token_file_is_created_owner_only(tmp_path, token_dir):
    storage = OwnerOnlyJSONTokenStorage(token_file(), namespace=CLIENT_ID)
    seed_tokens(storage)
    assert mode(token_file()) == 0o600
    assert mode(token_dir) == 0o700


def test_loose_token_file_is_repaired(tmp_path, token_dir, caplog):
    token_dir.mkdir(mode=0o755)
    token_file().write_text(json.dumps({"data": {}, "format_version": "2.0.0", "globus-sdk.version": globus_sdk.__version__}))
    token_file().chmod(0o644)
    with caplog.at_level(logging.WARNING):
        OwnerOnlyJSONTokenStorage(token_file())
    assert mode(token_file()) == 0o600 and mode(token_dir) == 0o700
    assert "restricting it to its owner" in caplog.text


def test_user_app_stores_tokens_in_the_owner_only_file(tmp_path, token_dir):
    app = build_app(make_profile(tmp_path))
    assert isinstance(app, globus_sdk.UserApp)
    assert isinstance(app.token_storage.token_storage, OwnerOnlyJSONTokenStorage)
    assert app.token_storage.token_storage.filepath == str(token_file())


def test_service_client_from_environment_keeps_tokens_off_disk(tmp_path, token_dir, monkeypatch):
    monkeypatch.setenv("PTYCHOFLOW_CLIENT_ID", CLIENT_ID)
    monkeypatch.setenv("PTYCHOFLOW_CLIENT_SECRET", SERVICE_SECRET)
    app = build_app(make_profile(tmp_path, client_id=None))
    assert isinstance(app, globus_sdk.ClientApp)
    assert not token_dir.exists() or not any(token_dir.iterdir())


def test_whoami_json_and_debug_logs_never_show_tokens(tmp_path, token_dir, capsys, caplog):
    write_profile(tmp_path)
    seed_tokens(OwnerOnlyJSONTokenStorage(token_file(), namespace=CLIENT_ID))
    RegisteredResponse(service="auth", path="/v2/oauth2/userinfo", json=USERINFO).add()

    with caplog.at_level(logging.DEBUG):
        code, out, err = run_cli(["-vv", "whoami", "--profile", str(tmp_path), "--json"], capsys)

    assert code == 0, err
    assert json.loads(out)["username"] == "scientist@anl.gov"
    assert any(r.name.startswith("globus_sdk") and r.levelname == "DEBUG" for r in caplog.records)
    for text in (out, err, caplog.text):
        assert SECRET_TOKEN not in text


def test_service_login_json_never_shows_the_secret(tmp_path, token_dir, monkeypatch, capsys, caplog):
    write_profile(tmp_path, client_id=None)
    monkeypatch.setenv("PTYCHOFLOW_CLIENT_ID", CLIENT_ID)
    monkeypatch.setenv("PTYCHOFLOW_CLIENT_SECRET", SERVICE_SECRET)
    load_response(globus_sdk.ConfidentialAppAuthClient.oauth2_client_credentials_tokens)

    with caplog.at_level(logging.DEBUG):
        code, out, err = run_cli(["login", "--profile", str(tmp_path), "--json"], capsys)

    assert code == 0, err
    assert json.loads(out)["kind"] == "client"
    for text in (out, err, caplog.text):
        assert SERVICE_SECRET not in text


def test_logout_revokes_and_empties_storage(tmp_path, token_dir, capsys):
    write_profile(tmp_path)
    seed_tokens(OwnerOnlyJSONTokenStorage(token_file(), namespace=CLIENT_ID))
    load_response(globus_sdk.NativeAppAuthClient.oauth2_revoke_token)

    code, out, err = run_cli(["logout", "--profile", str(tmp_path), "--json"], capsys)

    assert code == 0, err
    assert json.loads(out)["revoked"] is True
    assert OwnerOnlyJSONTokenStorage(token_file(), namespace=CLIENT_ID).get_token_data_by_resource_server() == {}
    assert mode(token_file()) == 0o600


def test_login_asks_for_flow_and_data_access_consents(tmp_path, token_dir, monkeypatch, capsys):
    """The interactive flow itself needs a browser; the seam is UserApp.login, checked for its scopes."""
    flow_id = "24bc4997-b483-4c25-a19c-64b0afc00743"
    collection = "d5049dd6-ce9c-4f9e-853f-c25069f369f8"
    seen = {}

    def fake_login(app, *, auth_params=None, force=False):
        seen["force"] = force
        seen["scopes"] = {server: [str(s) for s in scopes] for server, scopes in app.scope_requirements.items()}
        seen["handler"] = app.config.token_validation_error_handler

    monkeypatch.setattr(globus_sdk.UserApp, "login", fake_login)
    write_profile(tmp_path)
    code, out, err = run_cli(["login", "--profile", str(tmp_path), "--flow", flow_id, "--collection", collection, "--force", "--json"], capsys)

    assert code == 0, err
    assert seen["force"] is True and seen["handler"] is not None  # interactive: may prompt
    [flow_scope] = seen["scopes"][flow_id]
    assert f"{flow_id}/flow_" in flow_scope and f"{collection}/data_access" in flow_scope
    assert {"flows.globus.org", "transfer.api.globus.org", "funcx_service", "auth.globus.org"} <= set(seen["scopes"])
    result = json.loads(out)
    assert result["flows"] == [flow_id] and result["token_file"] == str(token_file())


def test_backend_apps_never_prompt(tmp_path, token_dir):
    assert build_app(make_profile(tmp_path)).config.token_validation_error_handler is None


def test_collection_without_flow_is_a_usage_error(tmp_path, token_dir, capsys):
    write_profile(tmp_path)
    code, _, err = run_cli(["login", "--profile", str(tmp_path), "--collection", "d5049dd6-ce9c-4f9e-853f-c25069f369f8"], capsys)
    assert code == 2 and "--flow FLOW_ID" in err
