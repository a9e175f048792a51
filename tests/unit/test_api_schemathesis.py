"""Schemathesis against the OpenAPI document: generated valid and invalid requests to every
operation of a live API on 127.0.0.1, as an admin token. No answer is a 5xx, every answer's
status and content type are documented, and bodies match their schema."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from proxy.api import openapi_document

from .api_harness import Api, running_api

schema = schemathesis.openapi.from_dict(openapi_document())
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    with running_api(tmp_path_factory.mktemp("schemathesis")) as api:
        for number in ("+15559990001", "+15559990002"):
            api.post("/v1/pool/numbers", {"number": number})
        yield api


@schema.parametrize()
@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_openapi_document(case, live: Api) -> None:
    case.call_and_validate(
        base_url=f"http://127.0.0.1:{live.port}",
        headers={"Authorization": f"Bearer {live.tokens['admin']}"},
        checks=CHECKS,
    )

