"""The HTTP a remote backend speaks: one streaming request read as server-sent events,
JSON GETs, the server's errors as our own, and the check that a JSON answer kept to its
schema."""

from __future__ import annotations

import http.client
import json
from typing import Any, Iterator
from urllib.parse import urlsplit

from ...errors import ConstrainedDecodingError, EngineUnavailableError, InvalidRequestError, LoopcoderError


class Stream:
    """One streaming HTTP request; `close()` from any thread ends it (and the server's work)."""

    def __init__(self, url: str, path: str, body: dict, headers: dict[str, str], timeout_s: float) -> None:
        parts = urlsplit(url)
        kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        self.conn = kind(parts.hostname, parts.port, timeout=timeout_s)
        full_path = parts.path.rstrip("/") + path
        try:
            self.conn.request("POST", full_path, json.dumps(body), {"Content-Type": "application/json", **headers})
            self.response = self.conn.getresponse()
        except OSError as exc:
            self.conn.close()
            raise EngineUnavailableError(f"cannot reach the remote backend at {url}: {exc}") from None
        if self.response.status != 200:
            detail = self.response.read(4000).decode("utf-8", "replace")
            self.conn.close()
            raise http_error(url + path, self.response.status, detail)

    def events(self) -> Iterator[dict]:
        """The server-sent events' JSON payloads, until `[DONE]` or the end of the stream."""
        while True:
            line = self.response.readline()
            if not line:
                return
            line = line.strip()
            if not line.startswith(b"data:"):
                continue  # comments, event names, blank separators
            data = line[5:].strip()
            if data == b"[DONE]":
                return
            try:
                yield json.loads(data)
            except json.JSONDecodeError:
                raise EngineUnavailableError(f"the remote backend sent a malformed event: {data[:200]!r}") from None

    def close(self) -> None:
        try:
            self.conn.sock and self.conn.sock.shutdown(2)
        except OSError:
            pass
        self.conn.close()


def get_json(url: str, path: str, headers: dict[str, str], timeout_s: float) -> Any:
    """GET `url` + `path` and parse its JSON answer."""
    parts = urlsplit(url)
    kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    conn = kind(parts.hostname, parts.port, timeout=timeout_s)
    try:
        conn.request("GET", parts.path.rstrip("/") + path, headers=headers)
        response = conn.getresponse()
        body = response.read().decode("utf-8", "replace")
    except OSError as exc:
        raise EngineUnavailableError(f"cannot reach the remote backend at {url}: {exc}") from None
    finally:
        conn.close()
    if response.status != 200:
        raise http_error(url + path, response.status, body)
    try:
        return json.loads(body)
    except json.JSONDecodeError:
        raise EngineUnavailableError(f"{url}{path} did not answer JSON: {body[:200]!r}") from None


def http_error(where: str, status: int, detail: str) -> LoopcoderError:
    try:
        body = json.loads(detail)
        message = body.get("error", body)
        if isinstance(message, dict):
            message = message.get("message") or json.dumps(message)
        if not isinstance(message, str):
            message = body.get("message") or body.get("detail") or detail
    except (json.JSONDecodeError, AttributeError):
        message = detail.strip() or "no details"
    text = f"the remote backend answered {status} for {where}: {message}"
    if status in (401, 403):
        return EngineUnavailableError(f"{text} (set the API key: apiKey, --api-key or LOOPCODER_API_KEY)")
    if status in (400, 404, 413, 422):
        return InvalidRequestError(text)
    return EngineUnavailableError(text)


_JSON_STARTS = tuple('{["-0123456789tfn')


def check_schema(text: str, schema: dict, url: str, complete: bool) -> None:
    """A server that ignored the schema is told apart from one cut by the token limit: JSON
    that is not even begun is the server's fault."""
    if not complete:
        if text.strip() and not text.lstrip().startswith(_JSON_STARTS):
            raise ConstrainedDecodingError(f"the remote backend at {url} did not follow the JSON schema (its "
                                           f"answer is not JSON): does it support structured output?")
        return
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        raise ConstrainedDecodingError(f"the remote backend at {url} did not follow the JSON schema (its answer "
                                       f"does not parse): does it support structured output?") from None
    try:
        import jsonschema
    except ImportError:
        return
    try:
        jsonschema.validate(value, schema)
    except jsonschema.ValidationError as exc:
        raise ConstrainedDecodingError(f"the remote backend at {url} answered JSON that breaks the schema: "
                                       f"{exc.message}") from None
