"""PlainBatchHttpRequest against the client library's own BatchHttpRequest: the same request
text on the wire and the same callbacks for the same answer; a damaged answer is an error.

Both batches are sent through one recording HTTP object that answers like Google's batch
endpoint (one part per Content-ID it was sent): these tests pin the library's format, the
scans against the emulator (tests/test_google_scan.py, test_google_faults.py) test the rest.
"""

from __future__ import annotations

import json
import re

import google_auth_httplib2
import httplib2
import pytest
from google.oauth2.credentials import Credentials
from googleapiclient.discovery import build
from googleapiclient.http import BatchHttpRequest

from plugins.google.batch import PlainBatchHttpRequest, split_multipart
from plugins.google.calls import OrjsonModel
from plugins.google.tokens import DAMAGED_BATCH_ERRORS

BATCH_URI = "http://127.0.0.1:9/batch/admin/directory_v1"
CONTENT_ID = re.compile(r"^Content-ID: <(.+) \+ (.+)>$", re.MULTILINE)
TOKENS = {"kind": "admin#directory#tokenList",
          "items": [{"clientId": "1234.apps.googleusercontent.com", "displayText": "Kahoot! ✓", "anonymous": False,
                     "nativeApp": False, "userKey": "1", "scopes": ["openid", "https://www.googleapis.com/auth/drive"]}]}
NOT_FOUND = {"error": {"code": 404, "message": "Resource Not Found: userKey",
                       "errors": [{"domain": "global", "reason": "notFound", "message": "Resource Not Found: userKey"}]}}


class GoogleBatchEndpoint:
    """Records what it is sent; answers each part by its user: 404 for users named gone*."""

    def __init__(self):
        self.sent: list[tuple[str, str]] = []  # (content type, body)
        self.cut_at: int | None = None

    def request(self, uri, method="GET", body=None, headers=None, **_):
        assert (uri, method) == (BATCH_URI, "POST")
        self.sent.append((headers["content-type"], body))
        boundary = "batch_Zx81"
        chunks = []
        for base, request_id in CONTENT_ID.findall(body.replace("\n ", " ")):  # unfolded, as a server reads it
            status, answer = ("404 Not Found", NOT_FOUND) if request_id.startswith("gone") else ("200 OK", TOKENS)
            chunks.append(f"--{boundary}\r\nContent-Type: application/http\r\nContent-ID: <response-{base} + {request_id}>\r\n\r\n"
                          f"HTTP/1.1 {status}\r\nContent-Type: application/json; charset=UTF-8\r\nVary: Origin\r\n\r\n"
                          f"{json.dumps(answer, ensure_ascii=False)}\r\n")
        content = ("".join(chunks) + f"--{boundary}--\r\n").encode()
        if self.cut_at is not None:
            content = content[:self.cut_at]
        return httplib2.Response({"status": "200", "content-type": f"multipart/mixed; boundary={boundary}"}), content


@pytest.fixture
def directory():
    # Requests remember the connection they were built with: its credentials go on every part.
    authorized = google_auth_httplib2.AuthorizedHttp(Credentials("ya29.test-token"), http=httplib2.Http())
    return build("admin", "directory_v1", http=authorized, static_discovery=True, cache_discovery=False,
                 client_options={"api_endpoint": "http://127.0.0.1:9/"}, model=OrjsonModel())


def calls(directory):
    """A batch's worth of calls: GETs with awkward user keys and paging, a POST with a body, and
    a part with a header the email package rewrites (so the library prints that one)."""
    odd = directory.tokens().list(userKey="two-spaces@example.edu")
    odd.headers["x-note"] = "two  spaces"
    return [
        ("alice@example.edu", directory.tokens().list(userKey="alice@example.edu",
                                                      fields="items(clientId,displayText,anonymous,nativeApp,userKey,scopes)")),
        ("o'brien+kids@example.edu", directory.tokens().list(userKey="o'brien+kids@example.edu")),
        ("gone@example.edu", directory.tokens().list(userKey="gone@example.edu")),
        ("page-2", directory.users().list(customer="my_customer", maxResults=500, pageToken="Q2Fy/dG9u+", orderBy="email")),
        ("make-admin", directory.users().makeAdmin(userKey="it@example.edu", body={"status": True})),
        ("two-spaces@example.edu", odd),
    ]


def send(batch_class, directory, endpoint):
    answers = []
    batch = batch_class(callback=lambda *answer: answers.append(answer), batch_uri=BATCH_URI)
    for request_id, request in calls(directory):
        batch.add(request, request_id=request_id)
    batch.execute(http=endpoint)
    return answers


def unfolded(content_type: str, body: str) -> tuple[str, str]:
    """The boundary and the batch's random id replaced, and header lines unfolded (RFC 5322 2.2.3):
    the library folds a Content-ID longer than 78 characters, PlainBatchHttpRequest does not."""
    boundary = re.search(r'boundary="([^"]+)"', content_type).group(1)
    body = body.replace(boundary, "B").replace("\n ", " ")
    return content_type.replace(boundary, "B"), re.sub(r"<[0-9a-f-]{36} \+ ", "<ID + ", body)


def test_the_request_is_the_text_the_library_writes(directory):
    library, plain = GoogleBatchEndpoint(), GoogleBatchEndpoint()
    send(BatchHttpRequest, directory, library)
    send(PlainBatchHttpRequest, directory, plain)
    ours = unfolded(*plain.sent[0])
    assert ours == unfolded(*library.sent[0])
    assert "\n " not in plain.sent[0][1] and "\n " in library.sent[0][1]
    assert ours[1].count("authorization: Bearer ya29.test-token\n") == 6
    assert '\n\n{"status": true}\n--B\n' in ours[1]  # the POST's body, after its content-length


def test_the_answer_reaches_the_callbacks_as_the_library_delivers_it(directory):
    def summary(answers):
        return [(request_id, response, None if error is None else (error.status_code, error.reason, error.content))
                for request_id, response, error in answers]

    library = send(BatchHttpRequest, directory, GoogleBatchEndpoint())
    plain = send(PlainBatchHttpRequest, directory, GoogleBatchEndpoint())
    assert summary(plain) == summary(library)
    assert [request_id for request_id, _, error in plain if error is not None] == ["gone@example.edu"]
    assert plain[0][1]["items"][0]["displayText"] == "Kahoot! ✓"


def test_an_answer_cut_short_anywhere_is_an_error_never_a_partial_answer(directory):
    endpoint = GoogleBatchEndpoint()
    full = send(PlainBatchHttpRequest, directory, endpoint)
    length = len(endpoint.request(BATCH_URI, "POST", endpoint.sent[0][1], {"content-type": endpoint.sent[0][0]})[1])
    for cut in range(0, length - len("--\r\n"), 7):
        endpoint.cut_at = cut
        with pytest.raises(DAMAGED_BATCH_ERRORS):
            send(PlainBatchHttpRequest, directory, endpoint)
    endpoint.cut_at = length - len("\r\n")  # the closing boundary arrived; only its line break is missing
    assert len(send(PlainBatchHttpRequest, directory, endpoint)) == len(full)


@pytest.mark.parametrize("content_type, text, problem", [
    ("application/json", "{}", "not multipart/mixed"),
    ("multipart/mixed; boundary=b", "--b\r\nContent-Type: application/http\r\n\r\nHTTP/1.1 200 OK\r\n\r\n{}\r\n--b--",
     "no Content-ID"),
    ("multipart/mixed; boundary=b", "--b\r\nContent-ID: <response-x + y>\r\nHTTP/1.1 200 OK\r\n--b--", "no headers"),
])
def test_a_malformed_answer_says_what_is_wrong(content_type, text, problem):
    with pytest.raises(DAMAGED_BATCH_ERRORS, match=problem):
        split_multipart(content_type, text)
