"""The payload codec (AES-GCM, key id in the metadata, rotation), the failure messages it hides, the key
every environment gets, and the codec endpoint the Temporal UI decodes through."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.api.failure.v1 import Failure
from temporalio.exceptions import ApplicationError

from api.app import create_app
from tests.conftest import TEST_DATA_CONVERTER, TEST_PAYLOAD_KEYS, make_settings
from ttelgo.admins import ensure_admin
from ttelgo.codec import KEY_ID, EncryptionCodec, data_converter, is_encrypted, new_key_spec, parse_keys
from ttelgo.db import create_engine, session_factory
from ttelgo.sandbox.processes import free_port
from ttelgo.sandbox.stack import load_dev_secrets
from ttelgo.sandbox.temporal_server import start_temporal
from ttelgo.settings import ConfigurationError, Environment, Settings

ACTIVATION = {"lpa": "LPA:1$rsp.example.com$K2-1ABC-XYZ", "email": "dana@example.com"}
OLD, NEW = new_key_spec("k-old"), new_key_spec("k-new")


def _plain(value: object) -> Payload:
    return TEST_DATA_CONVERTER.payload_converter.to_payloads([value])[0]


async def test_payloads_are_encrypted_under_the_first_key_and_decrypt_back() -> None:
    codec = EncryptionCodec(parse_keys(f"{NEW},{OLD}"))
    [sealed] = await codec.encode([_plain(ACTIVATION)])
    assert is_encrypted(sealed) and sealed.metadata[KEY_ID] == b"k-new"
    assert b"LPA:1" not in sealed.SerializeToString() and b"dana@" not in sealed.SerializeToString()
    [opened] = await codec.decode([sealed])
    assert json.loads(opened.data) == ACTIVATION and opened.metadata["encoding"] == b"json/plain"


async def test_keys_rotate_old_payloads_still_decrypt_and_plain_ones_pass_through() -> None:
    [by_old] = await EncryptionCodec(parse_keys(OLD)).encode([_plain(ACTIVATION)])
    rotated = EncryptionCodec(parse_keys(f"{NEW},{OLD}"))
    [opened] = await rotated.decode([by_old])
    assert json.loads(opened.data) == ACTIVATION
    # A history recorded before the codec (tests/histories) reads as it is.
    plain = _plain(ACTIVATION)
    assert await rotated.decode([plain]) == [plain]
    with pytest.raises(ValueError, match="k-old"):
        await EncryptionCodec(parse_keys(NEW)).decode([by_old])


@pytest.mark.parametrize(
    "spec",
    ["no-colon", f"{OLD},{OLD}", "k:not base64!", f"k:{base64.b64encode(b'short').decode()}", ":" + OLD[6:]],
)
def test_bad_key_settings_are_refused_without_echoing_the_key(spec: str) -> None:
    with pytest.raises(ConfigurationError) as refused:
        parse_keys(spec)
    assert "TEMPORAL_PAYLOAD_KEYS" in str(refused.value) and OLD.split(":")[1] not in str(refused.value)


async def test_failure_messages_and_stack_traces_are_encrypted() -> None:
    converter = data_converter(TEST_PAYLOAD_KEYS)
    failure = Failure()
    try:
        raise ApplicationError(f"supplier refused {ACTIVATION['lpa']}", type="Refused")
    except ApplicationError as error:
        await converter.encode_failure(error, failure)
    assert failure.message == "Encoded failure" and not failure.stack_trace
    assert b"LPA:1" not in failure.SerializeToString()
    decoded = await converter.decode_failure(failure)
    assert isinstance(decoded, ApplicationError) and ACTIVATION["lpa"] in decoded.message


def test_production_needs_payload_keys_and_dev_generates_one_kept_across_restarts(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, ttelgo_env="production")  # type: ignore[call-arg]
    assert "TEMPORAL_PAYLOAD_KEYS" in settings.missing_for_production()
    first = load_dev_secrets(tmp_path / "dev-secrets.json")["temporal_payload_keys"]
    assert list(parse_keys(first)) == ["dev-1"]
    assert load_dev_secrets(tmp_path / "dev-secrets.json")["temporal_payload_keys"] == first


def test_the_dev_server_ui_is_pointed_at_the_codec_endpoint(tmp_path: Path) -> None:
    ui_port, endpoint = free_port(), "http://127.0.0.1:8000/codec"
    process = start_temporal(
        tmp_path / "temporal", free_port(), ui_port, tmp_path / "t.log", codec_endpoint=endpoint
    )
    try:
        ui_settings = httpx.get(f"http://127.0.0.1:{ui_port}/api/v1/settings", timeout=5).json()
    finally:
        process.stop()
    assert ui_settings["Codec"]["Endpoint"] == endpoint


# -- the codec endpoint ------------------------------------------------------------------------------------

ADMIN = ("ops@example.com", "a long enough admin password")


@pytest.fixture
async def api(database_url: str) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    """The API as seen from this machine (loopback) and from elsewhere; Temporal itself is not needed."""
    engine = create_engine(database_url, pool_size=1)
    async with session_factory(engine)() as session:
        await ensure_admin(session, *ADMIN)
    await engine.dispose()
    app = create_app(make_settings(database_url=database_url, temporal_address="127.0.0.1:1"))
    async with app.router.lifespan_context(app):
        local = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
        remote = httpx.ASGITransport(app=app, client=("203.0.113.7", 50000))
        async with (
            httpx.AsyncClient(transport=local, base_url="http://api.test") as here,
            httpx.AsyncClient(transport=remote, base_url="http://api.test") as there,
        ):
            yield here, there


async def _sealed() -> str:
    payloads = Payloads(payloads=await TEST_DATA_CONVERTER.encode([ACTIVATION]))
    return json_format.MessageToJson(payloads)


def _values(response: httpx.Response) -> list[object]:
    payloads = json_format.Parse(response.content, Payloads())
    return [json.loads(p.data) for p in payloads.payloads]


async def test_the_ui_decodes_on_this_machine_and_encodes_back(api: tuple[httpx.AsyncClient, ...]) -> None:
    here, _ = api
    headers = {"Content-Type": "application/json", "X-Namespace": "default"}
    decoded = await here.post("/codec/decode", content=await _sealed(), headers=headers)
    assert decoded.status_code == 200, decoded.text
    assert _values(decoded) == [ACTIVATION]
    encoded = await here.post("/codec/encode", content=decoded.content, headers=headers)
    sealed = json_format.Parse(encoded.content, Payloads())
    assert all(is_encrypted(p) for p in sealed.payloads) and b"LPA:1" not in encoded.content
    assert _values(await here.post("/codec/decode", content=encoded.content, headers=headers)) == [ACTIVATION]
    bad = await here.post("/codec/decode", content=b"{not json", headers=headers)
    assert bad.status_code == 400 and bad.json()["code"] == "BAD_REQUEST"
    [foreign] = await EncryptionCodec(parse_keys(NEW)).encode([_plain(ACTIVATION)])
    unknown = await here.post(
        "/codec/decode", content=json_format.MessageToJson(Payloads(payloads=[foreign])), headers=headers
    )
    assert unknown.status_code == 400 and "k-new" in unknown.json()["detail"]


async def test_only_staff_decode_from_elsewhere_and_in_production(api: tuple[httpx.AsyncClient, ...]) -> None:
    here, there = api
    body = await _sealed()
    anonymous = await there.post("/codec/decode", content=body)
    assert anonymous.status_code == 401 and "LPA" not in anonymous.text
    customer = await there.post(
        "/api/v1/auth/register", json={"email": "erin@example.com", "password": "a long enough password"}
    )
    as_customer = {"Authorization": f"Bearer {customer.json()['access_token']}"}
    assert (await there.post("/codec/decode", content=body, headers=as_customer)).status_code == 403
    assert (await here.post("/codec/decode", content=body, headers=as_customer)).status_code == 403
    login = await there.post("/api/v1/auth/login", json={"email": ADMIN[0], "password": ADMIN[1]})
    as_admin = {"Authorization": f"Bearer {login.json()['access_token']}"}
    staff = await there.post("/codec/decode", content=body, headers=as_admin)
    assert staff.status_code == 200 and _values(staff) == [ACTIVATION]
    # In production even this machine needs the token.
    app = here._transport.app  # type: ignore[attr-defined]
    app.state.settings = app.state.settings.model_copy(update={"ttelgo_env": Environment.PRODUCTION})
    assert (await here.post("/codec/decode", content=body)).status_code == 401
    assert (await here.post("/codec/decode", content=body, headers=as_admin)).status_code == 200


async def test_the_ui_origin_gets_cors_and_others_do_not(api: tuple[httpx.AsyncClient, ...]) -> None:
    here, _ = api
    ui = f"http://localhost:{make_settings().temporal_ui_port}"
    preflight = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type,x-namespace",
    }
    allowed = await here.options("/codec/decode", headers={"Origin": ui, **preflight})
    assert allowed.status_code == 200 and allowed.headers["access-control-allow-origin"] == ui
    assert "x-namespace" in allowed.headers["access-control-allow-headers"].lower()
    refused = await here.options("/codec/decode", headers={"Origin": "https://evil.example", **preflight})
    assert "access-control-allow-origin" not in refused.headers
    answer = await here.post("/codec/decode", content=await _sealed(), headers={"Origin": ui})
    assert answer.headers["access-control-allow-origin"] == ui
