"""The one error type the simulator raises: rendered as eSIM Go's `{"message": ...}` JSON body."""

from fastapi.responses import JSONResponse

RETRYABLE_MESSAGES: dict[int, str] = {429: "Rate limit exceeded", 503: "processing"}


class ApiError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}

    def response(self) -> JSONResponse:
        return error_response(self.status, self.message, self.headers)


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"message": message}, status_code=status, headers=headers)
