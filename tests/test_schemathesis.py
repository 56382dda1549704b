"""Property-based requests from the gateway's own OpenAPI schema: no answer may be a 5xx.

Schemathesis generates requests for every operation, both valid by the schema (positive)
and deliberately invalid (negative: wrong types, missing fields, odd headers), sends them
to the live gateway of the `stack` fixture and applies its `not_a_server_error` check.
Examples are bounded and shrinking is off, so the run stays around a minute.
"""

from __future__ import annotations

import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from tests.stack import Stack

EXAMPLES = 25  # per operation and generation mode


@pytest.fixture(scope="module")
def schema(stack: Stack):  # type: ignore[no-untyped-def]
    return schemathesis.openapi.from_url(f"{stack.gateway_url}/openapi.json")


def _fuzz(operation, mode: GenerationMode, base_url: str) -> list[str]:  # type: ignore[no-untyped-def]
    failures: list[str] = []

    @hypothesis.settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case) -> None:  # type: ignore[no-untyped-def]
        response = case.call(base_url=base_url, timeout=60)
        try:
            case.validate_response(response, checks=[not_a_server_error])
        except AssertionError as exc:  # schemathesis' failure groups subclass AssertionError
            failures.append(f"{operation.label} [{mode.value}]: {response.status_code} {response.text[:300]}\n{exc}")

    try:
        run()
    except hypothesis.errors.Unsatisfiable:  # nothing to make invalid (an operation without parameters)
        assert mode == GenerationMode.NEGATIVE
    return failures


def test_no_server_errors(schema, stack: Stack) -> None:  # type: ignore[no-untyped-def]
    labels, failures = [], []
    for result in schema.get_all_operations():
        operation = result.ok()
        labels.append(operation.label)
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            failures += _fuzz(operation, mode, stack.gateway_url)
    assert {"POST /jobs", "GET /jobs/{job_id}", "POST /predict"} <= set(labels), labels
    assert not failures, "\n\n".join(failures[:10])
