"""Directory batches written and read without the email package.

google-api-python-client's `BatchHttpRequest` builds every part of a batch as an email
message and prints it with `email.generator`, then reads the answer with
`email.feedparser`: about 0.35 ms of Python a call. A full scan of a 100,000-account
district sends 100,000 tokens.list calls in batches, so that was 35 s of a scan whose
API calls take about 100 s, all of it holding Python's lock while the other threads
waited to read their answers.

`PlainBatchHttpRequest` is the library's batch with its two text conversions replaced:
the request body is the same text, built with string joins (a part whose headers or
body the email package would encode or escape is still printed by the library; a
Content-ID longer than 78 characters, which the library folds onto two lines, stays on
one, as RFC 5322 allows), and the multipart answer is split on its boundary. Everything
else is the library's: request ids and Content-IDs, the credentials on every part, the
one retry of 401 parts after a refresh, `HttpError` for a failed part, the callbacks.
tests/test_google_batch.py compares both conversions with the library's own, so an
upgrade that changes the format fails there first.

An answer that is not a complete multipart body (no closing boundary, a part without a
Content-ID or without its HTTP head) raises `BatchError`: the caller retries the whole
batch.
"""

from __future__ import annotations

import re
import urllib.parse
import uuid

import httplib2
from googleapiclient import _auth
from googleapiclient.errors import BatchError, HttpError
from googleapiclient.http import BatchHttpRequest

# Header values and bodies the email package prints as they are (with maxheaderlen=0 and
# compat32): printable ASCII words separated by single spaces.
_PLAIN_TEXT = re.compile(r"[\x21-\x7e]+(?: [\x21-\x7e]+)*")
_PLAIN_NAME = re.compile(r"[!#-'*+.0-9A-Z^-z|~-]+")  # an RFC 9110 token (no ':' or space)
_BOUNDARY = re.compile(r'boundary="?([^";]+)"?', re.IGNORECASE)


def _is_plain_header(name: object, value: object) -> bool:
    return (isinstance(name, str) and isinstance(value, str)
            and _PLAIN_NAME.fullmatch(name) is not None and _PLAIN_TEXT.fullmatch(value) is not None)


def _is_plain_body(body: object) -> bool:
    """One ASCII line that does not start with "From " (the email package would escape it)."""
    return body is None or (isinstance(body, str) and body.isascii() and "\n" not in body and "\r" not in body
                            and not body.startswith("From "))


class PlainBatchHttpRequest(BatchHttpRequest):
    """`BatchHttpRequest` with the request written, and the answer read, as plain text."""

    def _serialize_request(self, request) -> str:
        headers = request.headers.copy()
        credentials = _auth.get_credentials_from_http(request.http) if request.http is not None else None
        if credentials is not None:
            _auth.apply_credentials(credentials, headers)
        content_type = headers.pop("content-type", "application/json")
        if not (content_type.count("/") == 1 and _is_plain_header("content-type", content_type)
                and _is_plain_body(request.body) and all(_is_plain_header(name, value) for name, value in headers.items())):
            return super()._serialize_request(request)
        parsed = urllib.parse.urlparse(request.uri)
        request_line = urllib.parse.urlunparse(("", "", parsed.path, parsed.params, parsed.query, ""))
        lines = [f"{request.method} {request_line} HTTP/1.1", f"Content-Type: {content_type}", "MIME-Version: 1.0"]
        lines.extend(f"{name}: {value}" for name, value in headers.items())
        lines.append(f"Host: {parsed.netloc}")
        if request.body is not None:
            lines.append(f"content-length: {len(request.body)}")
        return "\n".join(lines) + "\n\n" + (request.body or "")

    def _execute(self, http, order, requests) -> None:
        boundary = "===============" + uuid.uuid4().hex + "=="
        chunks = [
            f"--{boundary}\nContent-Type: application/http\nMIME-Version: 1.0\nContent-Transfer-Encoding: binary\n"
            f"Content-ID: {self._id_to_header(request_id)}\n\n{self._serialize_request(requests[request_id])}\n"
            for request_id in order
        ]
        body = "".join(chunks) + f"--{boundary}--\n"
        headers = {"content-type": f'multipart/mixed; boundary="{boundary}"'}
        resp, content = http.request(self._batch_uri, method="POST", body=body, headers=headers)
        if resp.status >= 300:
            raise HttpError(resp, content, uri=self._batch_uri)
        for content_id, part in split_multipart(resp.get("content-type", ""), content.decode("utf-8")):
            response, part_content = http_response(part)
            self._responses[self._header_to_id(content_id)] = (response, part_content.encode("utf-8"))


def split_multipart(content_type: str, text: str) -> list[tuple[str, str]]:
    """The (Content-ID, body) of each part of a multipart/mixed answer (RFC 2046)."""
    found = _BOUNDARY.search(content_type)
    if not content_type.lower().startswith("multipart/mixed") or not found:
        raise BatchError(f"the batch answer is not multipart/mixed (Content-Type: {content_type[:100]!r})")
    # A delimiter starts a line; the line break before it belongs to the delimiter.
    segments = ("\n" + text).split("\n--" + found.group(1))
    if len(segments) < 2 or not segments[-1].startswith("--"):
        raise BatchError("the batch answer was cut short: it has no closing boundary")
    parts = []
    for segment in segments[1:-1]:
        segment = segment.removesuffix("\r")
        _, line_break, segment = segment.partition("\n")  # the rest of the delimiter line
        head, body = _split_head(segment)
        if not line_break or body is None:
            raise BatchError("a part of the batch answer has no headers")
        content_id = next((value.strip() for name, _, value in (line.partition(":") for line in head.splitlines())
                           if name.strip().lower() == "content-id"), None)
        if not content_id:
            raise BatchError("a part of the batch answer has no Content-ID")
        parts.append((content_id, body))
    return parts


def http_response(message: str) -> tuple[httplib2.Response, str]:
    """An HTTP answer written out in a batch part, as httplib2 would have returned it."""
    head, content = _split_head(message)
    lines = head.splitlines() if content is not None else []
    status_line = lines[0].split(" ", 2) if lines else []
    if len(status_line) < 2 or not status_line[0].startswith("HTTP/") or not status_line[1].isdigit():
        raise BatchError(f"a part of the batch answer is not an HTTP answer: {message[:80]!r}")
    fields = {"status": status_line[1]}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if colon:
            fields[name.strip().lower()] = value.strip()
    response = httplib2.Response(fields)
    response.reason = status_line[2] if len(status_line) > 2 else ""
    response.version = int(status_line[0].split("/", 1)[1].replace(".", "") or 11)
    return response, content


def _split_head(message: str) -> tuple[str, str | None]:
    """Headers and body, split at the first empty line (CRLF or LF); body None without one."""
    ends = [(at, len(sep)) for sep in ("\r\n\r\n", "\n\n") if (at := message.find(sep)) >= 0]
    if not ends:
        return message, None
    at, length = min(ends)
    return message[:at], message[at + length:]
