"""Items 4 and 10 of issue 13: errors name store keys, never the server's paths; a table that does not exist
is a 404 (a client error, not a 503); the key is checked before the body is parsed; the key's security scheme
is declared in OpenAPI."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from service_helpers import analysis_table, publish

from xpcompute.api.app import create_app
from xpcompute.api.security import redact_paths
from xpcompute.config import Settings
from xpcompute.errors import NotFoundError, StorageError
from xpcompute.storage.objects import LocalObjectStore


def _client(tmp_path: Path, raise_server_exceptions: bool = True, **kw: Any) -> TestClient:
    settings = Settings(**{"home": tmp_path, "dispatch": "inline", "slice_engine": "arrow", **kw})
    publish(LocalObjectStore(settings.objects_root), "exp", analysis_table(300))
    return TestClient(create_app(settings), raise_server_exceptions=raise_server_exceptions)


@pytest.mark.parametrize("table", ["exp/" + "x" * 300, "exp/" + "x" * 40, "exp/nested/" + "y" * 200 + "/t"])
def test_a_missing_table_is_a_404_that_names_the_key_not_the_servers_path(tmp_path: Path, table: str) -> None:
    with _client(tmp_path) as client:
        response = client.post("/experiments/exp/analyses", json={"metrics": ["hours"], "table": table})
    assert response.status_code == 404, response.json()
    assert str(tmp_path) not in response.text and str(tmp_path.resolve()) not in response.text
    assert table in response.json()["message"]


def test_store_errors_name_keys_relative_to_the_store(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path)
    with pytest.raises(NotFoundError) as missing:
        store.get_bytes("a/" + "z" * 400)
    (tmp_path / "dir.bin").mkdir()
    (tmp_path / "dir.bin" / "child").write_bytes(b"")
    with pytest.raises(NotFoundError) as folder:
        store.get_bytes("dir.bin")
    (tmp_path / "ro").mkdir()
    (tmp_path / "ro" / "f").write_bytes(b"x")
    (tmp_path / "ro").chmod(0o500)
    try:
        if not _can_write(tmp_path / "ro"):  # root ignores the mode: nothing to provoke then
            with pytest.raises(StorageError) as denied:
                store.put_bytes("ro/g", b"y")
            assert str(tmp_path) not in str(denied.value) and "'ro/g'" in str(denied.value)
    finally:
        (tmp_path / "ro").chmod(0o700)
    for exc in (missing.value, folder.value):
        assert str(tmp_path) not in str(exc)
    assert "'dir.bin'" in str(folder.value)


def _can_write(folder: Path) -> bool:
    try:
        (folder / ".probe").write_bytes(b"")
    except PermissionError:
        return False
    (folder / ".probe").unlink()
    return True


def test_redaction_cuts_the_store_root_and_home_out_of_any_message(tmp_path: Path) -> None:
    root = tmp_path / "objects"
    message = f"no published table at {root}/exp/analysis: run stage 1; home {tmp_path}"
    cleaned = redact_paths(message, [str(root), tmp_path])
    assert cleaned == "no published table at exp/analysis: run stage 1; home <store>"


def test_malformed_json_without_a_key_is_401_not_422(tmp_path: Path) -> None:
    with _client(tmp_path, auth="on", api_keys="secret") as client:
        bad = client.post("/experiments/exp/analyses", content=b"{not json",
                          headers={"content-type": "application/json"})
        assert bad.status_code == 401 and bad.json()["error"] == "unauthorized"
        wrong = client.post("/experiments/exp/analyses", content=b"{not json",
                            headers={"content-type": "application/json", "X-API-Key": "nope"})
        assert wrong.status_code == 401
        keyed = client.post("/experiments/exp/analyses", content=b"{not json",
                            headers={"content-type": "application/json", "X-API-Key": "secret"})
        assert keyed.status_code == 422  # with the key, the body is read and refused for what it is
        assert client.get("/healthz").status_code == 200 and client.get("/openapi.json").status_code == 200


def test_openapi_declares_the_api_key_scheme_on_the_routes_that_need_it(tmp_path: Path) -> None:
    with _client(tmp_path, auth="on", api_keys="secret", api_key_header="X-Team-Key") as client:
        schema = client.get("/openapi.json").json()
    assert schema["components"]["securitySchemes"]["ApiKey"] == {
        "type": "apiKey", "in": "header", "name": "X-Team-Key", "description": pytest.approx(
            schema["components"]["securitySchemes"]["ApiKey"]["description"])}
    post = schema["paths"]["/experiments/{experiment_id}/analyses"]["post"]
    assert post["security"] == [{"ApiKey": []}]
    assert "security" not in schema["paths"]["/healthz"]["get"]
    assert "429" in post["responses"] and "500" in post["responses"]


def test_an_unexpected_exception_is_a_typed_500_without_a_traceback(tmp_path: Path) -> None:
    with _client(tmp_path, raise_server_exceptions=False) as client:
        backend = client.app.state.backend  # type: ignore[attr-defined]

        def broken(*_: object, **__: object) -> None:
            raise ZeroDivisionError("float division by zero in /srv/secret/path.py")

        backend.coordinator.submit = broken
        response = client.post("/experiments/exp/analyses", json={"metrics": ["hours"]})
    assert response.status_code == 500
    assert response.json() == {"error": "internal",
                               "message": "internal error (ZeroDivisionError); the server log has the details"}
