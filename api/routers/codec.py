"""The codec server for the Temporal UI and CLI (`--ui-codec-endpoint` / `--codec-endpoint <api>/codec`):
it decrypts payloads for staff, so histories can be read in the UI while Temporal itself stores ciphertext.

Protocol (Temporal's codec server protocol): POST .../decode or .../encode with a `Payloads` protobuf as
JSON, answered in kind; a payload that cannot be decoded answers 400. Callers: an admin bearer token; in
development also anyone on the loopback interface (the dev UI sends no token). The UI calls from its own
origin, so these paths answer CORS for TEMPORAL_UI_ORIGINS only.
"""

from __future__ import annotations

from typing import Annotated

from cryptography.exceptions import InvalidTag
from fastapi import APIRouter, Depends, Request, Response
from google.protobuf import json_format
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send
from temporalio.api.common.v1 import Payloads
from temporalio.converter import PayloadCodec

from api.cors import allowed_origins
from api.deps import Bearer, Session, require_admin, settings_of
from ttelgo.errors import AppError
from ttelgo.settings import Settings

PREFIX = "/codec"
LOOPBACK = frozenset({"127.0.0.1", "::1"})


async def require_codec_caller(request: Request, session: Session, bearer: Bearer) -> None:
    settings = settings_of(request)
    host = request.client.host if request.client else None
    if bearer is None and not settings.is_production and host in LOOPBACK:
        return
    await require_admin(request, session, bearer)


router = APIRouter(prefix=PREFIX, tags=["codec"], dependencies=[Depends(require_codec_caller)])
PAYLOADS_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {"type": "object", "description": "Payloads as JSON"},
                # one payload: json/plain metadata and the JSON text "Hello", base64 as protobuf JSON spells bytes
                "example": {
                    "payloads": [{"metadata": {"encoding": "anNvbi9wbGFpbg=="}, "data": "IkhlbGxvIg=="}]
                },
            }
        },
    }
}


def _codec(request: Request) -> PayloadCodec | None:
    return request.app.state.temporal.data_converter.payload_codec


Codec = Annotated[PayloadCodec | None, Depends(_codec)]


async def _payloads(request: Request) -> Payloads:
    try:
        return json_format.Parse(await request.body(), Payloads())
    except (json_format.ParseError, UnicodeDecodeError) as exc:
        raise AppError("BAD_REQUEST", f"the body is not Payloads as protobuf JSON: {exc}") from exc


def _answer(payloads: Payloads) -> Response:
    return Response(json_format.MessageToJson(payloads), media_type="application/json")


@router.post("/decode", summary="Decrypt Temporal payloads (staff only)", openapi_extra=PAYLOADS_BODY)
async def decode(request: Request, codec: Codec) -> Response:
    payloads = await _payloads(request)
    if codec is not None:
        try:
            await codec.decode_wrapper(payloads)
        except (ValueError, InvalidTag) as exc:
            raise AppError("BAD_REQUEST", f"a payload cannot be decoded: {exc or 'wrong key'}") from exc
    return _answer(payloads)


@router.post("/encode", summary="Encrypt Temporal payloads (staff only)", openapi_extra=PAYLOADS_BODY)
async def encode(request: Request, codec: Codec) -> Response:
    payloads = await _payloads(request)
    if codec is not None:
        await codec.encode_wrapper(payloads)
    return _answer(payloads)


def ui_origins(settings: Settings) -> list[str]:
    if settings.temporal_ui_origins:
        return allowed_origins(settings.temporal_ui_origins)
    return [f"http://127.0.0.1:{settings.temporal_ui_port}", f"http://localhost:{settings.temporal_ui_port}"]


class CodecCors:
    """CORS for the codec paths alone, for the Temporal UI's origins: outermost, so the API's own CORS
    allow-list (for front ends) neither answers nor refuses the UI's preflight."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.cors = CORSMiddleware(
            app,
            allow_origins=ui_origins(settings),
            allow_methods=["POST"],
            allow_headers=["content-type", "x-namespace", "authorization"],
            allow_credentials=True,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(PREFIX + "/"):
            await self.cors(scope, receive, send)
        else:
            await self.app(scope, receive, send)
