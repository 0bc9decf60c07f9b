"""Every error leaves the server in OpenAI's shape. Client mistakes are 4xx: a body that is not
JSON or does not validate → 400 naming the field; a UserError (bad adapter folder ...) → 400;
an unknown route → 404; a wrong method → 405. Only the server's own failures are 500."""

from __future__ import annotations

import logging

from danlu.errors import UnsafeFileError, UserError
from danlu.serve.errors import APIError

log = logging.getLogger(__name__)


def _json(error: APIError):
    from fastapi.responses import JSONResponse

    headers = {"WWW-Authenticate": "Bearer"} if error.status == 401 else None
    return JSONResponse(error.body(), status_code=error.status, headers=headers)


def _union_member(part) -> bool:
    """pydantic names the member of a union it tried in the location (`prompt.str`,
    `content.list[TextPart]`); people need the field only."""
    return isinstance(part, str) and ("[" in part or part in {"str", "int", "float", "bool", "list", "dict", "none"})


def validation_error(exc) -> APIError:
    """pydantic's first complaint as one sentence, with the field as `param`."""
    errors = exc.errors()
    first = errors[0] if errors else {"msg": "invalid request", "loc": ()}
    if first.get("type") == "json_invalid":
        return APIError(400, "the request body is not valid JSON", code="invalid_json")
    loc = [str(p) for p in first.get("loc", ()) if p != "body" and not _union_member(p)]
    if not loc:
        return APIError(400, "the request body must be a JSON object (Content-Type: application/json)",
                        code="invalid_json")
    param = ".".join(loc) or None
    if first.get("type") == "missing" and param:
        return APIError(400, f"{param}: this field is required", param=param, code="missing_field")
    message = first.get("msg", "invalid value").removeprefix("Value error, ")
    return APIError(400, f"{param}: {message}" if param else message, param=param, code="invalid_value")


def install_error_handlers(app) -> None:
    from fastapi.exceptions import RequestValidationError
    from starlette.exceptions import HTTPException

    @app.exception_handler(APIError)
    async def _api(_request, exc: APIError):
        return _json(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request, exc: RequestValidationError):
        return _json(validation_error(exc))

    @app.exception_handler(UserError)
    async def _user(_request, exc: UserError):
        param = exc.where if exc.where and " " not in exc.where else None
        code = "unsafe_file" if isinstance(exc, UnsafeFileError) else None
        return _json(APIError(400, str(exc), param=param, code=code))

    @app.exception_handler(HTTPException)
    async def _http(request, exc: HTTPException):
        message = f"no route {request.method} {request.url.path}" if exc.status_code in (404, 405) else str(exc.detail)
        return _json(APIError(exc.status_code, message))

    @app.exception_handler(Exception)
    async def _bug(_request, exc: Exception):
        log.exception("internal error", exc_info=exc)
        return _json(APIError(500, "internal server error (see the server log)", code="internal_error"))
