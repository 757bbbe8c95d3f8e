"""Schema fuzzing: schemathesis drives every route of the app's own OpenAPI document, in-process.

Checks: no server error (5xx), status codes, content types, headers and bodies conform to the
document, schema-invalid requests are rejected, key-protected routes enforce the key, other
methods get 405. Not checked: `positive_data_acceptance` (a schema-valid request must be 2xx):
the document cannot express what only the server knows (installed voices and mixes, language
codes, whether bytes are decodable audio), and a 400 there is the correct answer.

Examples per operation are bounded (20 fuzzed, plus schemathesis' examples and coverage phases)
and derandomized, so the run is repeatable and cheap: random voices never name an installed
voice, so speech synthesizes only the document's own example (`Hello.` with `alloy`) in the
formats, speeds and stream modes the coverage phase picks (~30 short syntheses); random uploads
are not audio, so transcription answers 400 before Whisper (its 200 paths are covered by
test_bad_input.py and the API tests).
"""

from __future__ import annotations

import pytest

from ..conftest import missing_tool  # noqa: E402
from ..support.wait import wait_until

try:
    import schemathesis
except ImportError:  # skipped locally, a failure under CI=true
    missing_tool("schemathesis is not installed (pip install -e '.[test]')")
from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis.python import asgi as st_asgi  # noqa: E402

from gateway.app import create_app  # noqa: E402
from gateway.config import Settings  # noqa: E402

# schemathesis fuzzes every route (hundreds of requests)
pytestmark = pytest.mark.slow

KEY = "fuzz-key-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}

_settings = Settings()
_settings.server.api_keys = KEY
_settings.server.open_paths = "/openapi.json"  # schemathesis loads the document with no key
_app = create_app(_settings)
_gw = _app.state.gateway
_state = {"started": False}


async def app_once(scope, receive, send):  # type: ignore[no-untyped-def]
    """The app, with the gateway started once for the whole module, on the first real request.

    schemathesis ends an ASGI app's lifespan after every test item and starts it again for the
    next; a gateway shuts down once (its scheduler closes for good, as in a process), so the
    lifespan is acknowledged here and the gateway is stopped at module teardown. Loading the
    document (at collection) starts nothing."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    if not _state["started"] and scope["path"] != "/openapi.json":
        _state["started"] = True
        await _gw.start()
    await _app(scope, receive, send)


schema = schemathesis.openapi.from_asgi("/openapi.json", app_once)

_c = schemathesis.checks
CHECKS = [
    _c.not_a_server_error, _c.status_code_conformance, _c.content_type_conformance,
    _c.response_headers_conformance, _c.response_schema_conformance, _c.negative_data_rejection,
    _c.ignored_auth, _c.unsupported_method, _c.missing_required_header,
]  # fmt: skip


@pytest.fixture(scope="module", autouse=True)
def _gateway_lifecycle():  # type: ignore[no-untyped-def]
    yield
    if _state["started"]:
        st_asgi._get_portal().call(_gw.stop)


def _wait_ready() -> None:
    """/ready is 503 until the model files are hashed; fuzz it once they are."""
    wait_until(lambda: _gw.ready()[0], "the model files hashed (/ready)")


@schema.parametrize()
@settings(max_examples=20, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))  # fmt: skip
def test_openapi_conformance(case):  # type: ignore[no-untyped-def]
    if case.path == "/ready":
        _wait_ready()
    case.call_and_validate(headers=AUTH, checks=CHECKS)


def test_document_is_truthful() -> None:
    """Errors are documented as the OpenAI object (no FastAPI 422), keys as a bearer scheme."""
    doc = _app.openapi()
    assert "HTTPValidationError" not in doc["components"]["schemas"]
    assert doc["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            assert "422" not in op["responses"], (method, path)
            for status, response in op["responses"].items():
                if status.startswith("4"):
                    ref = response["content"]["application/json"]["schema"]["$ref"]
                    assert ref.endswith("/Error"), (method, path, status)
    protected = {("post", "/v1/audio/speech"), ("post", "/v1/audio/transcriptions"),
                 ("post", "/v1/audio/translations"), ("get", "/v1/scheduler"),
                 ("get", "/api/ps"), ("post", "/api/ps/{model}"),
                 ("delete", "/api/ps/{model}"), ("get", "/metrics")}  # fmt: skip
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            assert bool(op.get("security")) == ((method, path) in protected), (method, path)
    # keys are configured for this app: the key is required, not optional
    assert doc["paths"]["/v1/audio/speech"]["post"]["security"] == [{"HTTPBearer": []}]
    body = doc["paths"]["/v1/audio/transcriptions"]["post"]["requestBody"]["content"]
    form = body["multipart/form-data"]["schema"]["$ref"].rsplit("/", 1)[-1]
    assert "file" in doc["components"]["schemas"][form]["required"]
    assert create_app(Settings()).openapi()["paths"]["/v1/audio/speech"]["post"]["security"] == [
        {"HTTPBearer": []}, {}]  # fmt: skip
