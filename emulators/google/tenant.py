"""A Google Workspace tenant described by data, as the Admin SDK emulator serves it.

A `GoogleTenant` holds directory users, the OAuth clients (apps) users granted access
to, each user's tokens, the `token` audit log (authorize / revoke / activity events),
the domain-wide delegation set-up (service accounts, their public keys and delegated
scopes), its organizational units (with ids) and the Cloud Identity Policy API's
policies (the admin console's settings, per org unit or group). It round-trips through JSON (`to_json` / `from_json`) so a child
process can serve the same tenant; `google_tenant()` turns a synthetic district
(emulators.district) into one, and `build_tenant()` makes one of any size,
deterministic for a seed.

Mutations (`authorize`, `revoke`, `use`, `add_user`, `delete_user`, `churn`) record the
matching token audit events, as Google does, so incremental scans can be tested.

Memory: a benchmark tenant holds ~800,000 tokens and as many events, so tokens are
small tuples in per-user lists and the audit log is columnar (`array`s), sorted by time.

Tenant JSON (what `from_json` reads; field names as in the Directory API):

    {"customer_id": "C03az79cb", "domain": "district.example", "org_units": ["/Staff", ...],
     "users": [{"id": "1180...", "primaryEmail": "...", "name": {"givenName": "...", "familyName": "..."},
                "orgUnitPath": "/Students/HS", "suspended": false, "isAdmin": false, "aliases": []}],
     "clients": [{"clientId": "...apps.googleusercontent.com", "displayText": "...", "anonymous": false,
                  "nativeApp": false, "clientType": "WEB", "scopes": [...]}],
     "grants": [{"userId": "1180...", "clientId": "...", "scopes": [...],
                 "authorizedAt": "2026-09-01T10:00:00Z", "lastUsedAt": "2026-11-20T08:00:00Z"}],
     "events": [{"name": "revoke", "userId": "...", "clientId": "...", "scopes": [...], "time": "..."}],
     "service_accounts": [{"client_email": "...", "client_id": "...", "public_keys": {"<kid>": "<PEM>"},
                           "scopes": [...]}],
     "org_unit_ids": {"/": "03ph8a2z1...", ...},
     "policies": [{"name": "policies/...", "customer": "customers/C03az79cb", "type": "ADMIN",
                   "policyQuery": {"orgUnit": "orgUnits/03ph8a2z1...", "query": "...", "sortOrder": 101.0},
                   "setting": {"type": "settings/api_controls.unconfigured_third_party_apps",
                               "value": {"accessLevel": "BLOCK_ALL_SCOPES"}}}]}

Users with `isAdmin` are the admins a service account may impersonate with privileges;
`authorizedAt` / `lastUsedAt` become `authorize` / `activity` events (the log serves the
last 180 days of them).
"""

from __future__ import annotations

import bisect
import datetime as dt
import hashlib
import random
import threading
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

from ..district import District, build_district
from .chrome import ChromeFleet

UTC = dt.timezone.utc
RETENTION = dt.timedelta(days=180)  # the token audit log keeps 180 days
EVENT_NAMES = ("authorize", "revoke", "activity")
_EVENT_CODE = {name: code for code, name in enumerate(EVENT_NAMES)}

# The scopes the scanner needs, as an admin authorizes them for domain-wide delegation.
SCANNER_SCOPES = (
    "https://www.googleapis.com/auth/admin.directory.user.readonly",
    "https://www.googleapis.com/auth/admin.directory.user.security",
    "https://www.googleapis.com/auth/admin.reports.audit.readonly",
)
# The scopes the scanner's posture checks ask for, each in a token of its own: the Cloud
# Identity Policy API (the settings), and org unit names (to show "/Students", not an id).
POSTURE_SCOPES = (
    "https://www.googleapis.com/auth/cloud-identity.policies.readonly",
    "https://www.googleapis.com/auth/admin.directory.orgunit.readonly",
)


def to_micros(moment: dt.datetime) -> int:
    return int(moment.timestamp() * 1_000_000)


def from_micros(micros: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(micros / 1_000_000, UTC)


def rfc3339(micros: int) -> str:
    """Google's timestamp format: 2026-11-20T13:02:11.123Z."""
    moment = from_micros(micros)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_time(value: str | dt.datetime | None) -> dt.datetime | None:
    if value is None or isinstance(value, dt.datetime):
        return value
    moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@dataclass(slots=True)
class DirectoryUser:
    """A user as users.list returns it (the fields the emulator keeps)."""

    id: str  # numeric, 21 digits
    primary_email: str
    given_name: str
    family_name: str
    org_unit_path: str = "/"
    suspended: bool = False
    is_admin: bool = False
    aliases: tuple[str, ...] = ()
    creation_time: str = "2019-08-01T15:00:00.000Z"

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "primaryEmail": self.primary_email,
            "name": {"givenName": self.given_name, "familyName": self.family_name},
            "orgUnitPath": self.org_unit_path, "suspended": self.suspended, "isAdmin": self.is_admin,
            "aliases": list(self.aliases), "creationTime": self.creation_time,
            # As Directory answers: the primary address and the aliases, none with a type.
            "emails": [{"address": self.primary_email, "primary": True}, *({"address": alias} for alias in self.aliases)],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DirectoryUser:
        name = data.get("name") or {}
        return cls(
            id=str(data["id"]), primary_email=data["primaryEmail"], given_name=name.get("givenName", ""),
            family_name=name.get("familyName", ""), org_unit_path=data.get("orgUnitPath", "/"),
            suspended=bool(data.get("suspended", False)), is_admin=bool(data.get("isAdmin", False)),
            aliases=tuple(data.get("aliases", ())), creation_time=data.get("creationTime", "2019-08-01T15:00:00.000Z"),
        )


@dataclass(frozen=True, slots=True)
class OAuthClient:
    """An app (OAuth client) users can grant access to."""

    client_id: str
    display_text: str
    anonymous: bool = False
    native_app: bool = False
    client_type: str = "WEB"  # token audit `client_type`: WEB, NATIVE_ANDROID, NATIVE_IOS, ...

    def to_json(self) -> dict[str, Any]:
        return {"clientId": self.client_id, "displayText": self.display_text, "anonymous": self.anonymous,
                "nativeApp": self.native_app, "clientType": self.client_type}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> OAuthClient:
        return cls(data["clientId"], data.get("displayText", data["clientId"]), bool(data.get("anonymous", False)),
                   bool(data.get("nativeApp", False)), data.get("clientType", "WEB"))


class Token(NamedTuple):
    """One user's grant to one client: what tokens.list returns."""

    client: OAuthClient
    scopes: tuple[str, ...]


class Event(NamedTuple):
    """One token audit event, resolved for rendering."""

    micros: int
    seq: int
    name: str
    user: DirectoryUser
    client: OAuthClient
    scopes: tuple[str, ...]


@dataclass
class ServiceAccount:
    """A service account with domain-wide delegation: who may sign assertions, for which scopes."""

    client_email: str
    client_id: str
    public_keys: dict[str, str]  # private_key_id -> public key PEM
    scopes: tuple[str, ...]  # scopes authorized in the Admin console (domain-wide delegation)

    def to_json(self) -> dict[str, Any]:
        return {"client_email": self.client_email, "client_id": self.client_id,
                "public_keys": dict(self.public_keys), "scopes": list(self.scopes)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ServiceAccount:
        return cls(data["client_email"], str(data["client_id"]), dict(data["public_keys"]), tuple(data.get("scopes", ())))


class EventLog:
    """The token audit log: columnar, sorted by (time, seq); seq is unique and never reused."""

    def __init__(self) -> None:
        self.micros = array("q")
        self.seqs = array("q")
        self.names = array("b")
        # 4-byte indexes ("i", not the 8 bytes of "l"): a million-account log holds ten million events.
        self.users = array("i")  # index into GoogleTenant.people
        self.clients = array("i")  # index into GoogleTenant.clients_list
        self.scope_sets = array("i")  # index into GoogleTenant.scope_sets
        self.next_seq = 0

    def __len__(self) -> int:
        return len(self.micros)

    def load(self, rows: list[tuple[int, int, int, int, int]]) -> None:
        """Bulk-load (micros, name code, user, client, scope set) rows in any order."""
        rows.sort(key=lambda row: row[0])
        for micros, name, user, client, scope_set in rows:
            self._append(micros, name, user, client, scope_set)

    def add(self, micros: int, name: str, user: int, client: int, scope_set: int) -> None:
        if not self.micros or micros >= self.micros[-1]:
            self._append(micros, _EVENT_CODE[name], user, client, scope_set)
            return
        # An event in the past (a test back-dating one): insert in order.
        position = bisect.bisect_right(self.micros, micros)
        for column, value in ((self.micros, micros), (self.seqs, self.next_seq), (self.names, _EVENT_CODE[name]),
                              (self.users, user), (self.clients, client), (self.scope_sets, scope_set)):
            column.insert(position, value)
        self.next_seq += 1

    def _append(self, micros: int, name: int, user: int, client: int, scope_set: int) -> None:
        self.micros.append(micros)
        self.seqs.append(self.next_seq)
        self.names.append(name)
        self.users.append(user)
        self.clients.append(client)
        self.scope_sets.append(scope_set)
        self.next_seq += 1

    def newest_first(self, start: int, end: int, before: tuple[int, int] | None) -> Iterator[int]:
        """Indexes of events with start <= micros < end and (micros, seq) < before, newest first."""
        position = bisect.bisect_left(self.micros, end)
        if before is not None:
            before_micros, before_seq = before
            if before_micros < end:
                position = bisect.bisect_left(self.micros, before_micros)
                # Among events at that very microsecond, keep those with a smaller seq.
                while position < len(self.micros) and self.micros[position] == before_micros and self.seqs[position] < before_seq:
                    position += 1
        micros = self.micros
        for index in range(position - 1, -1, -1):
            if micros[index] < start:
                return
            yield index


class GoogleTenant:
    """Users, apps, tokens and the token audit log of one Google Workspace customer."""

    def __init__(self, *, customer_id: str = "C03az79cb", domain: str = "district.example",
                 org_units: Iterable[str] = ("/",)):
        self.customer_id = customer_id
        self.domain = domain
        self.org_units = list(org_units)
        self.lock = threading.RLock()
        self.people: list[DirectoryUser] = []  # every user ever, deleted ones too (events refer to them)
        self._person_index: dict[str, int] = {}
        self.users: dict[str, DirectoryUser] = {}  # current users by id
        self._by_email: dict[str, str] = {}  # primary email and aliases (lowercase) -> id
        self._sorted_emails: list[tuple[str, str]] | None = None
        self.clients: dict[str, OAuthClient] = {}
        self.clients_list: list[OAuthClient] = []
        self._client_index: dict[str, int] = {}
        self.requested_scopes: dict[str, tuple[str, ...]] = {}  # what each app asks for (churn reuses it)
        self.scope_sets: list[tuple[str, ...]] = []
        self._scope_set_index: dict[tuple[str, ...], int] = {}
        self.tokens: dict[str, list[Token]] = {}
        self.events = EventLog()
        self.service_accounts: dict[str, ServiceAccount] = {}  # by client_email
        self.org_unit_ids: dict[str, str] = {}  # org unit path -> id (without Google's "id:" prefix)
        self.policies: list[dict[str, Any]] = []  # Cloud Identity Policy API policies, as the API returns them
        self.chrome = ChromeFleet()  # extensions the managed browsers report (Chrome Management API)

    # -- building -------------------------------------------------------------------------

    def add_client(self, client: OAuthClient) -> OAuthClient:
        with self.lock:
            known = self.clients.get(client.client_id)
            if known is not None:
                return known
            self.clients[client.client_id] = client
            self._client_index[client.client_id] = len(self.clients_list)
            self.clients_list.append(client)
            return client

    def _scope_set(self, scopes: Iterable[str]) -> int:
        key = tuple(scopes)
        index = self._scope_set_index.get(key)
        if index is None:
            index = self._scope_set_index[key] = len(self.scope_sets)
            self.scope_sets.append(key)
        return index

    def add_user(self, user: DirectoryUser) -> DirectoryUser:
        """Create a user (no audit event: user creation is in the admin log, not the token log)."""
        with self.lock:
            if user.id in self.users:
                raise ValueError(f"user {user.id} already exists")
            for email in (user.primary_email, *user.aliases):
                if email.lower() in self._by_email:
                    raise ValueError(f"email {email} is already taken")
            self._person_index[user.id] = len(self.people)
            self.people.append(user)
            self.users[user.id] = user
            for email in (user.primary_email, *user.aliases):
                self._by_email[email.lower()] = user.id
            self.tokens[user.id] = []
            self._sorted_emails = None
            if user.org_unit_path not in self.org_units:
                self.org_units.append(user.org_unit_path)
            return user

    def delete_user(self, user_id: str) -> None:
        """Delete a user: their tokens go with them; users.list and tokens.list stop knowing them."""
        with self.lock:
            user = self.users.pop(user_id)
            for email in (user.primary_email, *user.aliases):
                self._by_email.pop(email.lower(), None)
            self.tokens.pop(user_id, None)
            self._sorted_emails = None

    def find_user(self, key: str) -> DirectoryUser | None:
        """users/{userKey}: a numeric id, a primary email or an alias."""
        user = self.users.get(key)
        if user is None:
            user_id = self._by_email.get(key.lower())
            user = self.users.get(user_id) if user_id else None
        return user

    def users_by_email(self) -> list[tuple[str, str]]:
        """(lowercase primary email, id) of current users, sorted: users.list pages through it."""
        with self.lock:
            if self._sorted_emails is None:
                self._sorted_emails = sorted((u.primary_email.lower(), u.id) for u in self.users.values())
            return self._sorted_emails

    # -- tokens and their audit events ------------------------------------------------------

    def authorize(self, user_id: str, client: OAuthClient | str, scopes: Iterable[str], *,
                  at: dt.datetime | None = None, record_event: bool = True) -> Token:
        """A user grants an app access (again): the token holds the union of scopes; an `authorize` event."""
        with self.lock:
            if isinstance(client, str):
                client = self.clients[client]
            client = self.add_client(client)
            scopes = tuple(scopes)
            self.requested_scopes.setdefault(client.client_id, scopes)
            tokens = self.tokens[user_id]
            for position, token in enumerate(tokens):
                if token.client.client_id == client.client_id:
                    merged = tuple(dict.fromkeys(token.scopes + scopes))
                    tokens[position] = token = Token(client, self._intern(merged))
                    break
            else:
                token = Token(client, self._intern(scopes))
                tokens.append(token)
            if record_event:
                self._record("authorize", user_id, client.client_id, scopes, at)
            return token

    def revoke(self, user_id: str, client_id: str, *, at: dt.datetime | None = None) -> bool:
        """Access is revoked (by the user, or an admin's tokens.delete): a `revoke` event."""
        with self.lock:
            tokens = self.tokens.get(user_id, [])
            for position, token in enumerate(tokens):
                if token.client.client_id == client_id:
                    del tokens[position]
                    self._record("revoke", user_id, client_id, token.scopes, at)
                    return True
            return False

    def use(self, user_id: str, client_id: str, *, at: dt.datetime | None = None) -> None:
        """The app called an API on the user's behalf: an `activity` event."""
        with self.lock:
            token = next(t for t in self.tokens[user_id] if t.client.client_id == client_id)
            self._record("activity", user_id, client_id, token.scopes, at)

    def _intern(self, scopes: tuple[str, ...]) -> tuple[str, ...]:
        return self.scope_sets[self._scope_set(scopes)]

    def _record(self, name: str, user_id: str, client_id: str, scopes: tuple[str, ...], at: dt.datetime | None) -> None:
        micros = to_micros(at or dt.datetime.now(UTC))
        self.events.add(micros, name, self._person_index[user_id], self._client_index[client_id], self._scope_set(scopes))

    def event(self, index: int) -> Event:
        log = self.events
        return Event(log.micros[index], log.seqs[index], EVENT_NAMES[log.names[index]], self.people[log.users[index]],
                     self.clients_list[log.clients[index]], self.scope_sets[log.scope_sets[index]])

    def latest_use(self, user_id: str, client_id: str, *, since: dt.datetime, activity: bool = True) -> dt.datetime | None:
        """The newest `authorize` (and `activity`) event for a grant since `since`: what last_used should show."""
        person, client = self._person_index[user_id], self._client_index[client_id]
        names = {_EVENT_CODE["authorize"]} | ({_EVENT_CODE["activity"]} if activity else set())
        log = self.events
        for index in log.newest_first(to_micros(since), 2**62, None):
            if log.users[index] == person and log.clients[index] == client and log.names[index] in names:
                return from_micros(log.micros[index])
        return None

    def all_tokens(self) -> Iterator[tuple[str, Token]]:
        """(user id, token) for every current token: the ground truth a full scan must find."""
        with self.lock:
            for user_id, tokens in self.tokens.items():
                for token in tokens:
                    yield user_id, token

    def grants_digest(self) -> dict[str, Any]:
        """Count and SHA-256 of sorted "user|client|scope scope" lines (scopes sorted): compare without shipping them."""
        lines = sorted(f"{user}|{token.client.client_id}|{' '.join(sorted(token.scopes))}" for user, token in self.all_tokens())
        digest = hashlib.sha256("\n".join(lines).encode()).hexdigest()
        return {"grants": len(lines), "users": len(self.users), "sha256": digest}

    # -- org units and policies (the admin console's settings) -----------------------------

    def org_unit_paths(self) -> list[str]:
        """Every org unit path, parents included (a user's OU implies its parents), sorted."""
        with self.lock:
            paths = {"/"}
            for path in self.org_units:
                parts = [part for part in path.split("/") if part]
                paths.update("/" + "/".join(parts[:n]) for n in range(1, len(parts) + 1))
            return sorted(paths)

    def org_unit_id(self, path: str) -> str:
        """The org unit's id, stable for the customer and path (Google's look like 03ph8a2z1enx4lx)."""
        with self.lock:
            known = self.org_unit_ids.get(path)
            if known is None:
                digest = hashlib.sha256(f"{self.customer_id}:{path}".encode()).hexdigest()
                known = self.org_unit_ids[path] = "03" + digest[:13]
            return known

    def set_policy(self, setting: str, value: dict[str, Any], *, org_unit: str = "/", group: str | None = None,
                   kind: str = "ADMIN", sort_order: float | None = None) -> dict[str, Any]:
        """Set a setting for an org unit (or a group in it), as an admin (ADMIN) or Google (SYSTEM)
        would: replaces the policy of the same setting, org unit, group and kind."""
        setting_type = setting if setting.startswith("settings/") else "settings/" + setting
        with self.lock:
            if org_unit not in self.org_units:
                self.org_units.append(org_unit)
            unit = self.org_unit_id(org_unit)
            query = f"entity.org_units.exists(org_unit, org_unit.org_unit_id == orgUnitId('{unit}'))"
            policy_query: dict[str, Any] = {"orgUnit": f"orgUnits/{unit}"}
            if group:
                policy_query["group"] = f"groups/{group}"
                query += f" && entity.groups.exists(group, group.group_id == groupId('{group}'))"
            if sort_order is None:
                sort_order = (100.0 if kind == "ADMIN" else 1.0) + len(self.policies)
            policy_query.update(query=query, sortOrder=float(sort_order))
            digest = hashlib.sha256(f"{setting_type}|{unit}|{group}|{kind}".encode()).hexdigest()
            policy = {"name": f"policies/{digest[:20]}", "customer": f"customers/{self.customer_id}",
                      "policyQuery": policy_query, "setting": {"type": setting_type, "value": value}, "type": kind}
            self.policies = [p for p in self.policies if p["name"] != policy["name"]] + [policy]
            return policy

    def remove_policies(self, setting: str | None = None, *, org_unit: str | None = None) -> int:
        """Remove policies (of a setting, of an org unit, or all): how many went."""
        setting_type = setting if setting is None or setting.startswith("settings/") else "settings/" + setting
        unit = None if org_unit is None else f"orgUnits/{self.org_unit_id(org_unit)}"
        with self.lock:
            kept = [p for p in self.policies
                    if not ((setting_type is None or p["setting"]["type"] == setting_type)
                            and (unit is None or p["policyQuery"].get("orgUnit") == unit))]
            removed = len(self.policies) - len(kept)
            self.policies = kept
            return removed

    # -- benchmark churn --------------------------------------------------------------------

    def churn(self, fraction: float, *, seed: int = 0, at: dt.datetime | None = None) -> dict[str, int]:
        """Change the grants of `fraction` of users: each gains a new app or loses one (with events)."""
        with self.lock:
            rng = random.Random(seed)
            user_ids = self._churn_population()
            chosen = rng.sample(user_ids, max(1, round(len(user_ids) * fraction))) if user_ids else []
            authorized = revoked = 0
            for user_id in chosen:
                tokens = self.tokens[user_id]
                if tokens and rng.random() < 0.5:
                    self.revoke(user_id, rng.choice(tokens).client.client_id, at=at)
                    revoked += 1
                else:
                    held = {t.client.client_id for t in tokens}
                    candidates = [c for c in self.clients_list if c.client_id not in held and c.client_id in self.requested_scopes]
                    if not candidates:
                        continue
                    client = rng.choice(candidates)
                    self.authorize(user_id, client, self.requested_scopes[client.client_id], at=at)
                    authorized += 1
            return {"users": len(chosen), "authorized": authorized, "revoked": revoked}

    def _churn_population(self) -> list[str]:
        """Current users' ids, sorted (what churn draws from)."""
        return sorted(self.users)

    # -- JSON -------------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        """A JSON-serializable description; events derived from grants are included as explicit events."""
        with self.lock:
            log = self.events
            return {
                "customer_id": self.customer_id, "domain": self.domain, "org_units": list(self.org_units),
                "users": [user.to_json() for user in self.users.values()],
                "deleted_users": [p.to_json() for p in self.people if p.id not in self.users],
                "clients": [{**client.to_json(), "scopes": list(self.requested_scopes.get(client.client_id, ()))}
                            for client in self.clients_list],
                "grants": [{"userId": user_id, "clientId": token.client.client_id, "scopes": list(token.scopes)}
                           for user_id, token in self.all_tokens()],
                "events": [{"name": EVENT_NAMES[log.names[i]], "userId": self.people[log.users[i]].id,
                            "clientId": self.clients_list[log.clients[i]].client_id,
                            "scopes": list(self.scope_sets[log.scope_sets[i]]), "time": from_micros(log.micros[i]).isoformat()}
                           for i in range(len(log))],
                "service_accounts": [sa.to_json() for sa in self.service_accounts.values()],
                "org_unit_ids": dict(self.org_unit_ids),
                "policies": [dict(policy) for policy in self.policies],
            }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> GoogleTenant:
        """Build from data. Grants may carry `authorizedAt` / `lastUsedAt` (ISO 8601): they become
        `authorize` / `activity` events; `events` adds explicit ones (e.g. old revocations)."""
        tenant = cls(customer_id=data.get("customer_id", "C03az79cb"), domain=data.get("domain", "district.example"),
                     org_units=data.get("org_units", ("/",)))
        for client in data.get("clients", ()):
            tenant.add_client(OAuthClient.from_json(client))
            if client.get("scopes"):
                tenant.requested_scopes[client["clientId"]] = tuple(client["scopes"])
        for user in data.get("deleted_users", ()):
            person = DirectoryUser.from_json(user)
            tenant._person_index[person.id] = len(tenant.people)
            tenant.people.append(person)
        for user in data.get("users", ()):
            tenant.add_user(DirectoryUser.from_json(user))
        rows = []
        for grant in data.get("grants", ()):
            client = tenant.clients.get(grant["clientId"]) or tenant.add_client(
                OAuthClient(grant["clientId"], grant.get("displayText", grant["clientId"])))
            tenant.authorize(grant["userId"], client, grant.get("scopes", ()), record_event=False)
            for key, name in (("authorizedAt", "authorize"), ("lastUsedAt", "activity")):
                if grant.get(key):
                    rows.append((to_micros(parse_time(grant[key])), _EVENT_CODE[name], tenant._person_index[grant["userId"]],
                                 tenant._client_index[client.client_id], tenant._scope_set(grant.get("scopes", ()))))
        for event in data.get("events", ()):
            client = tenant.clients.get(event["clientId"]) or tenant.add_client(OAuthClient(event["clientId"], event["clientId"]))
            rows.append((to_micros(parse_time(event["time"])), _EVENT_CODE[event["name"]], tenant._person_index[event["userId"]],
                         tenant._client_index[client.client_id], tenant._scope_set(event.get("scopes", ()))))
        tenant.events.load(rows)
        for sa in data.get("service_accounts", ()):
            account = ServiceAccount.from_json(sa)
            tenant.service_accounts[account.client_email] = account
        tenant.org_unit_ids.update(data.get("org_unit_ids", {}))
        tenant.policies = [dict(policy) for policy in data.get("policies", ())]
        return tenant


# -- a synthetic district ------------------------------------------------------------------

def google_tenant(district: District, *, customer_id: str = "C03az79cb", admin_email: str | None = None) -> GoogleTenant:
    """A synthetic district (emulators.district) as Google Workspace holds it.

    A super admin (`admin_email`, default it-admin@<domain>, in /IT) and every person, in
    /Students/<school>/Grade <n> or /Staff/<school>; an OAuth client for each app with Google
    scopes; a token for each Google grant, whose authorization is an `authorize` event and
    whose last use an `activity` event (the log serves the last 180 days of them).
    """
    tenant = GoogleTenant(customer_id=customer_id, domain=district.domain, org_units=["/", "/Staff", "/Students", "/IT"])
    admin_email = admin_email or f"it-admin@{district.domain}"
    tenant.add_user(DirectoryUser(_user_id(district, "admin"), admin_email, "IT", "Admin", "/IT", is_admin=True))
    users = [tenant.add_user(DirectoryUser(_user_id(district, person.key), person.email, person.given, person.family,
                                           person.google_org_unit, suspended=person.suspended,
                                           aliases=person.google_aliases))
             for person in district.people]
    clients: dict[int, OAuthClient] = {}  # by id() of the App: two apps may share a name
    for app in district.apps:
        if app.google_scopes:
            clients[id(app)] = tenant.add_client(OAuthClient(app.google_id, app.name, app.google_anonymous, app.google_native,
                                                             app.google_client_type))
            tenant.requested_scopes[app.google_id] = app.google_scopes
    rows = []
    authorize, activity = _EVENT_CODE["authorize"], _EVENT_CODE["activity"]
    for grant in district.grants:
        if grant.provider != "google":
            continue
        user, client = users[grant.person], clients[id(grant.app)]
        tenant.authorize(user.id, client, grant.scopes, record_event=False)
        event = (tenant._person_index[user.id], tenant._client_index[client.client_id], tenant._scope_set(grant.scopes))
        rows.append((to_micros(grant.authorized_at), authorize, *event))
        if grant.last_used_at:
            rows.append((to_micros(grant.last_used_at), activity, *event))
    tenant.events.load(rows)
    set_district_posture(tenant)
    return tenant


def set_district_posture(tenant: GoogleTenant) -> None:
    """A typical district's API controls, as the Policy API returns them from real tenants
    (camelCase fields, the enum spellings tenants send rather than the documented ones):

    - unconfigured third-party apps: any app for staff at the top (GWS.COMMONCONTROLS.10.4
      fails there), blocked in /Students, and blocked for users designated under 18;
      Google's own SYSTEM policy sits below the admin's (a lower sortOrder);
    - internal apps trusted (10.3 fails); Gmail restricted, Drive restricted for high-risk
      scopes only, every other service open (10.1 and 10.2 fail);
    - Marketplace: allowlisted apps only (11.1 passes); Classroom data access on (CLASSROOM.2.1,
      a SHOULD, fails); and an unrelated Gmail setting the scanner's filter leaves out.
    """
    tenant.set_policy("api_controls.unconfigured_third_party_apps",
                      {"accessLevel": "UNSPECIFIED_UBER_BLOCK", "accessLevelUnder18": "UNDERAGE_UBER_BLOCK_UNSPECIFIED"},
                      kind="SYSTEM", sort_order=1.0)
    tenant.set_policy("api_controls.unconfigured_third_party_apps",
                      {"accessLevel": "UNSPECIFIED_UBER_BLOCK", "accessLevelUnder18": "BLOCK_ALL_SCOPES"}, sort_order=201.0)
    tenant.set_policy("api_controls.unconfigured_third_party_apps",
                      {"accessLevel": "BLOCK_ALL_SCOPES", "accessLevelUnder18": "BLOCK_ALL_SCOPES"}, org_unit="/Students",
                      sort_order=202.0)
    tenant.set_policy("api_controls.internal_apps", {"trustInternalApps": True}, sort_order=203.0)
    tenant.set_policy("api_controls.google_services", {"services": [
        {"scopesGroup": "GMAIL_ALL", "isEnabled": False}, {"scopesGroup": "DRIVE_HIGH_RISK", "isEnabled": False}]},
        sort_order=204.0)
    tenant.set_policy("api_controls.custom_user_message", {"errorText": ""}, kind="SYSTEM", sort_order=2.0)
    tenant.set_policy("workspace_marketplace.apps_access_options",
                      {"accessLevel": "ALLOW_LISTED_APPS", "allowAllInternalApps": False}, sort_order=205.0)
    tenant.set_policy("classroom.api_data_access", {"enableApiAccess": True}, sort_order=206.0)
    tenant.set_policy("gmail.auto_forwarding", {"enableAutoForwarding": False}, sort_order=207.0)


def build_tenant(users: int = 200, *, seed: int = 1, domain: str = "district.example", student_domain: str | None = None,
                 admin_email: str | None = None, grants_per_user: float = 4.0, extra_apps: int = 0,
                 now: dt.datetime | None = None, on_demand: bool = False) -> GoogleTenant:
    """A synthetic district of `users` accounts (plus one super admin) as Google holds it,
    deterministic for a seed: emulators.district's generator with the emulators' apps, Google's
    grants only, about `grants_per_user` tokens an account (a long tail, up to 40), each
    authorized in the last 400 days; `extra_apps` small third-party apps more.

    `on_demand`: the same people, grants drawn per person, made when asked for instead of held
    (emulators.google.on_demand: a million accounts in a few hundred megabytes)."""
    if on_demand:
        from ..district_on_demand import OnDemandDistrict
        from .on_demand import OnDemandGoogleTenant

        district = OnDemandDistrict(users, seed=seed, domain=domain, student_domain=student_domain,
                                    grants_per_user=grants_per_user, extra_apps=extra_apps, providers=("google",), now=now)
        return OnDemandGoogleTenant(district, admin_email=admin_email)
    district = build_district(users, seed=seed, domain=domain, student_domain=student_domain, grants_per_user=grants_per_user,
                              extra_apps=extra_apps, providers=("google",), now=now)
    return google_tenant(district, admin_email=admin_email)


def _user_id(district: District, key: int | str) -> str:
    """A 21-digit id, as Google's are, stable for the district and the person."""
    digest = hashlib.sha256(f"{district.seed}:{district.domain}:{key}".encode()).digest()
    return str(100_000_000_000_000_000_000 + int.from_bytes(digest[:8], "big") % 19_999_999_999_999_999_999)


__all__ = [
    "DirectoryUser", "Event", "EventLog", "GoogleTenant", "OAuthClient", "POSTURE_SCOPES", "RETENTION", "SCANNER_SCOPES",
    "ServiceAccount", "set_district_posture",
    "Token", "build_tenant", "from_micros", "google_tenant", "rfc3339", "to_micros",
]