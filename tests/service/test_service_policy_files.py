"""A policy that names a file of its own (the broker's networks list) through `PUT /v1/policy`:
the file is read before the policy is kept, and an unusable one is a 422 that changes nothing."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import Api

from brokerguard.engine import PolicyError
from brokerguard.events import Event
from brokerguard.guard import decision_point
from brokerguard.service.app import create_app


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


def test_a_policy_name_too_long_for_the_records_is_refused_not_every_decision_lost(
    api: Api, database_url: str, recorded_events: list[Event], tmp_path: Path
) -> None:
    """Every decision and instruction records the guard's name (``brokerguard:NAME``, at most
    200 characters): a longer one was kept, and PostgreSQL then refused every decision row."""
    source = api.get("/v1/policy").json()["source"]
    headers = {**api.auth("admin"), "content-type": "application/toml"}
    long = re.sub(r'(?m)^name = ".*"$', f'name = "{"p" * 190}"', source, count=1)
    refused = api.client.put("/v1/policy", content=long.encode(), headers=headers)
    assert refused.status_code == 422
    assert refused.json()["error"]["field"] == "name"
    assert api.get("/v1/policy").json()["source"] == source  # nothing was kept
    event = next(e for e in recorded_events if decision_point(e) is not None)
    assert api.decide(event).status_code == 200
    api.settle()
    assert api.service.recorder.dropped == 0
    file = tmp_path / "long.toml"
    file.write_text(long, encoding="utf-8")
    with pytest.raises(PolicyError, match="name"):  # `serve --policy FILE` stops at start
        create_app(database_url, policy_path=file)
