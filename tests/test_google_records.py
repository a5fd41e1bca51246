"""The Google provider's shaping (plugins/google/records.py) on answers as the Directory API
returns them (shapes from ../shared/reference/google-apis.md §1.1 and §1.4), without a network."""

import json

from plugins.google.records import app_record, project_number, token_records, user_record
from scanner import App, Grant, User

ROLES = {"student_domains": [], "student_org_units": ["/Students"]}

USERS_PAGE = json.loads("""{
  "kind": "admin#directory#users",
  "etag": "\\"opaque\\"",
  "users": [
    {"kind": "admin#directory#user", "id": "118102598514375220671", "etag": "\\"e\\"",
     "primaryEmail": "jdoe@district.example",
     "name": {"givenName": "Jane", "familyName": "Doe", "fullName": "Jane Doe"},
     "isAdmin": false, "isDelegatedAdmin": false, "suspended": false, "archived": false,
     "orgUnitPath": "/Students/HS", "customerId": "C03abc123",
     "creationTime": "2019-08-01T15:00:00.000Z", "lastLoginTime": "2026-11-20T13:02:11.000Z"},
    {"kind": "admin#directory#user", "id": "204", "primaryEmail": "it-admin@district.example",
     "name": {"fullName": "Pat Admin"}, "isAdmin": true, "suspended": true, "orgUnitPath": "/Staff"},
    {"kind": "admin#directory#user", "id": "205", "primaryEmail": "new.hire@district.example"}
  ],
  "nextPageToken": "opaque"
}""")

TOKENS = json.loads("""{
  "kind": "admin#directory#tokenList",
  "etag": "\\"opaque\\"",
  "items": [
    {"kind": "admin#directory#token", "etag": "\\"t1\\"",
     "clientId": "1095133494869.apps.googleusercontent.com",
     "displayText": "Google Apps Sync for Microsoft Outlook", "anonymous": false, "nativeApp": true,
     "userKey": "118102598514375220671", "scopes": ["https://www.googleapis.com/auth/calendar", "openid"]},
    {"kind": "admin#directory#token", "clientId": "777000111222-abc.apps.googleusercontent.com",
     "displayText": "Attendance Helper", "userKey": "118102598514375220671", "scopes": ["openid"]},
    {"kind": "admin#directory#token", "clientId": "anonymous", "anonymous": true, "scopes": []},
    {"kind": "admin#directory#token", "displayText": "no client id: skipped", "scopes": ["openid"]}
  ]
}""")


def test_users_page_becomes_users_with_roles_and_flags():
    users = [user_record(user, ROLES) for user in USERS_PAGE["users"]]
    assert users == [
        User(id="118102598514375220671", email="jdoe@district.example", name="Jane Doe", role="student",
             org_unit="/Students/HS", suspended=False, is_admin=False),
        User(id="204", email="it-admin@district.example", name="Pat Admin", role="staff",
             org_unit="/Staff", suspended=True, is_admin=True),
        # Fields Google leaves out of a sparse entry take their defaults, not errors.
        User(id="205", email="new.hire@district.example", name="", role="staff", org_unit="", suspended=False, is_admin=False),
    ]


def test_tokens_become_one_app_per_client_and_a_grant_per_token():
    seen: set[str] = set()
    records = list(token_records("118102598514375220671", TOKENS["items"], seen, internal_projects={"777000111222"}))
    outlook, helper = "1095133494869.apps.googleusercontent.com", "777000111222-abc.apps.googleusercontent.com"
    assert records == [
        App(id=outlook, name="Google Apps Sync for Microsoft Outlook",
            details={"anonymous": False, "nativeApp": True, "projectNumber": "1095133494869"}),
        Grant(user_id="118102598514375220671", app_id=outlook, scopes=["https://www.googleapis.com/auth/calendar", "openid"]),
        App(id=helper, name="Attendance Helper", ownership="internal",
            details={"anonymous": False, "nativeApp": False, "projectNumber": "777000111222"}),
        Grant(user_id="118102598514375220671", app_id=helper, scopes=["openid"]),
        # An anonymous client without a userKey: the listed user holds it; its name is its id.
        App(id="anonymous", name="anonymous", details={"anonymous": True, "nativeApp": False}),
        Grant(user_id="118102598514375220671", app_id="anonymous", scopes=[]),
    ]
    assert seen == {outlook, helper, "anonymous"}
    # The next user's tokens name the same clients: grants only, no second App.
    again = list(token_records("205", TOKENS["items"][:2], seen, internal_projects=set()))
    assert [type(r) for r in again] == [Grant, Grant]


def test_project_number_as_gam_derives_it():
    assert project_number("1095133494869.apps.googleusercontent.com") == "1095133494869"
    assert project_number("777000111222-abc.apps.googleusercontent.com") == "777000111222"
    assert project_number("anonymous") is None
    assert app_record({"clientId": "12-x.apps.googleusercontent.com"}, {"13"}).ownership == "third_party"


def test_aliases_are_the_accounts_own_addresses_never_contact_details():
    # As users.list returns them with fields=...aliases,emails: `emails` repeats the primary
    # address and the aliases (no type), and lists contact addresses an admin typed in (typed).
    entry = json.loads("""{
      "id": "301", "primaryEmail": "zoe.park@district.example", "name": {"fullName": "Zoe Park"},
      "aliases": ["zpark@district.example", "z.park@district-alt.example"],
      "emails": [
        {"address": "zoe.park@district.example", "primary": true},
        {"address": "ZPark@district.example"},
        {"address": "zoe.park@district.example.test-google-a.com"},
        {"address": "zoe.home@gmail.example", "type": "home"},
        {"address": "zoe@previous-school.example", "type": "work"},
        {"address": "coach@league.example", "type": "custom", "customType": "coaching"}
      ]
    }""")
    user = user_record(entry, ROLES)
    assert user.email == "zoe.park@district.example"
    assert user.aliases == [
        "zpark@district.example", "z.park@district-alt.example", "ZPark@district.example",
        "zoe.park@district.example.test-google-a.com",
    ]
    assert user_record({"id": "302", "primaryEmail": "a@district.example"}, ROLES).aliases == []
