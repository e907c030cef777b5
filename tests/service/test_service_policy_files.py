"""A policy that names a file of its own (the broker's networks list) through `PUT /v1/policy`:
the file is read before the policy is kept, and an unusable one is a 422 that changes nothing."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from conftest import Api


def test_a_policy_naming_a_networks_file_is_refused_before_it_is_kept_when_unusable(
    make_api: Callable[..., Api], sqlite_url: str, tmp_path: Path
) -> None:
    api = make_api(sqlite_url)
    source = api.get("/v1/policy").json()["source"]
    headers = {**api.auth("admin"), "content-type": "application/toml"}

    def put(networks: Path) -> Any:
        text = source.replace('# networks = "my-networks.toml"', f'networks = "{networks}"')
        return api.client.put("/v1/policy", content=text.encode(), headers=headers)

    missing = put(tmp_path / "missing.toml")
    assert missing.status_code == 422
    assert missing.json()["error"]["field"] == "detectors.login.networks"
    assert api.get("/v1/policy").json()["source"] == source  # nothing was kept

    own = tmp_path / "own.toml"
    own.write_text('[addresses]\nanonymizer = ["203.0.113.0/24"]\n', encoding="utf-8")
    assert put(own).status_code == 200
    assert api.service.host.guard.lookup("203.0.113.9").kind == "anonymizer"
    back = api.client.put("/v1/policy", content=source.encode(), headers=headers)
    assert back.status_code == 200  # dropping the file drops its entries
    assert api.service.host.guard.lookup("203.0.113.9").kind != "anonymizer"
