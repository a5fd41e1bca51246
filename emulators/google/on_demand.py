"""A Google tenant of any size that makes its users and tokens when asked for.

`google_tenant()` holds every user and token of a district: at a million accounts, a
million DirectoryUser records and eight million tokens, gigabytes. `OnDemandGoogleTenant`
serves an `OnDemandDistrict` (emulators.district_on_demand) the same way while holding
only:

- two sorted arrays that find a user by id (Google's 21-digit ids are 10**20 plus 64 bits of
  a digest: the 64 bits, sorted) and one that orders users by address, for users.list and
  for finding a user by address (a binary search that makes each address it compares);
- the token audit log, which must be served in time order (columnar arrays, as GoogleTenant's;
  by default only its last 180 days, all the log serves);
- what changed since: users added or deleted, and the tokens of every user whose tokens
  changed (authorize, revoke, churn), held as GoogleTenant holds them.

Everything else (a user, a user's tokens) is made again from the district when asked for,
the same every time, so the emulator's answers, paging, ordering and changes are those of
a GoogleTenant built from `district.materialize()`: the tests compare the two.

The containers that stand in for GoogleTenant's dicts (`users`, `tokens`, `people`) answer
the same calls. Reading (`users.get(id)`, `tokens.get(id)`, `users.values()`) makes a user
or a token list for the call; indexing (`users[id]`, `tokens[id]`) holds what it returns
from then on, so setting `tenant.users[id].suspended = True`, or changing `tenant.tokens[id]`
as GoogleTenant's own writes do, changes the tenant (a changed primary address is not
re-sorted for users.list, as in GoogleTenant).
"""

from __future__ import annotations

import bisect
import hashlib
import heapq
from array import array
from collections.abc import Iterator, Mapping, MutableMapping, Sequence
from typing import Any

from ..district_on_demand import OnDemandDistrict
from .tenant import (
    _EVENT_CODE, RETENTION, DirectoryUser, GoogleTenant, OAuthClient, Token, set_district_posture, to_micros,
)

_ID_BASE = 100_000_000_000_000_000_000  # Google ids here: 21 digits, this plus 64 bits of a digest
_DAY_MICROS = 86_400_000_000


def _id_bits(district: OnDemandDistrict, key: int | str) -> int:
    """The 64 bits of emulators.google.tenant._user_id (the modulus there never applies to 64 bits)."""
    digest = hashlib.sha256(f"{district.seed}:{district.domain}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 19_999_999_999_999_999_999


class OnDemandGoogleTenant(GoogleTenant):
    """An OnDemandDistrict as Google Workspace holds it (see the module's docstring).

    `history=True` keeps the audit events older than the 180 days the log serves, as
    google_tenant() does (more memory; the same event sequence numbers as it gives).
    """

    def __init__(self, district: OnDemandDistrict, *, customer_id: str = "C03az79cb", admin_email: str | None = None,
                 history: bool = False):
        super().__init__(customer_id=customer_id, domain=district.domain, org_units=["/", "/Staff", "/Students", "/IT"])
        self.district = district
        self._size = size = district.size
        # What changed since the district was made.
        self._extra: list[DirectoryUser] = []  # users added since (person index size + n), deleted ones too
        self._extra_index: dict[str, int] = {}  # their ids -> person index
        self._current_extra: dict[str, DirectoryUser] = {}
        self._extra_emails: dict[str, str] = {}  # lowercase primary address or alias of a current added user -> id
        self._extra_sorted: list[tuple[str, str]] = []  # (lowercase primary address, id) of current added users
        self._deleted: set[str] = set()  # the district's users deleted since
        self._held: dict[str, list[Token]] = {}  # the tokens of users whose tokens changed, and of added users
        self._held_users: dict[str, DirectoryUser] = {}  # the district's users handed out by `users[id]` (changeable)
        self.users = _Users(self)
        self.tokens = _Tokens(self)
        self.people = _People(self)
        self._person_index = _PersonIndex(self)
        self._clients_of_app: dict[int, OAuthClient] = {}  # by id() of the App: two apps may share a name
        for app in district.apps:
            if app.google_scopes:
                self._clients_of_app[id(app)] = self.add_client(OAuthClient(
                    app.google_id, app.name, app.google_anonymous, app.google_native, app.google_client_type))
                self.requested_scopes[app.google_id] = app.google_scopes
        bits = array("Q", (_id_bits(district, key) for key in range(size)))
        order = sorted(range(size), key=bits.__getitem__)
        self._id_order = array("i", order)  # keys by id
        self._id_sorted = array("Q", (bits[key] for key in order))
        del bits, order
        emails = [district.email(key) for key in range(size)]
        self._email_order = array("i", sorted(range(size), key=emails.__getitem__))  # keys by address
        del emails
        self._aliases: dict[str, int] = {}  # the district's aliases (a quarter of the staff) -> key
        for key in range(min(size, district.staff_total)):
            for alias in district.person(key).google_aliases:
                self._aliases[alias.lower()] = key
        known = set(self.org_units)
        for key in range(size):  # org units in the order google_tenant() adds them
            path = self._org_unit(key)
            if path not in known:
                known.add(path)
                self.org_units.append(path)
        admin_email = admin_email or f"it-admin@{district.domain}"
        self.add_user(DirectoryUser(str(_ID_BASE + _id_bits(district, "admin")), admin_email, "IT", "Admin", "/IT",
                                    is_admin=True))
        self._load_events(history)
        set_district_posture(self)

    # -- the district's users, made when asked for ------------------------------------------

    def _org_unit(self, key: int) -> str:
        district = self.district
        staff = key < district.staff_total
        school = district_school(district, key)
        if staff:
            return f"/Staff/{school}"
        grade = district.grade_or_title[key]
        return f"/Students/{school}/Grade {'K' if grade == 0 else grade}"

    def _user_id(self, key: int) -> str:
        return str(_ID_BASE + _id_bits(self.district, key))

    def _user(self, key: int) -> DirectoryUser:
        user_id = self._user_id(key)
        held = self._held_users.get(user_id)
        if held is not None:
            return held
        person = self.district.person(key)
        return DirectoryUser(user_id, person.email, person.given, person.family, person.google_org_unit,
                             suspended=person.suspended, aliases=person.google_aliases)

    def _key_of_id(self, user_id: str) -> int | None:
        """The district's person with this id (deleted or not), or None."""
        if not isinstance(user_id, str) or len(user_id) != 21 or not user_id.isdigit():
            return None
        bits = int(user_id) - _ID_BASE
        position = bisect.bisect_left(self._id_sorted, bits)
        if 0 <= bits < 2**64 and position < len(self._id_sorted) and self._id_sorted[position] == bits:
            return self._id_order[position]
        return None

    def _key_of_email(self, email: str) -> int | None:
        """The district's person with this primary address (lowercase), deleted or not, or None."""
        order, address = self._email_order, self.district.email
        position = bisect.bisect_left(order, email, key=address)
        if position < len(order) and address(order[position]) == email:
            return order[position]
        return None

    def _generated_tokens(self, key: int) -> list[Token]:
        clients = self._clients_of_app
        return [Token(clients[id(grant.app)], self._intern(grant.scopes))
                for grant in self.district.grants_of(key) if grant.provider == "google"]

    def _current_tokens(self, user_id: str) -> list[Token] | None:
        """A current user's tokens (a new list for the district's unchanged users), or None."""
        held = self._held.get(user_id)
        if held is not None:
            return held
        if user_id in self._current_extra or user_id in self._deleted:
            return None
        key = self._key_of_id(user_id)
        return None if key is None else self._generated_tokens(key)

    # -- GoogleTenant's methods over the district and what changed -------------------------

    def add_user(self, user: DirectoryUser) -> DirectoryUser:
        """Create a user (no audit event: user creation is in the admin log, not the token log)."""
        with self.lock:
            if user.id in self.users:
                raise ValueError(f"user {user.id} already exists")
            for email in (user.primary_email, *user.aliases):
                if self.find_user(email) is not None:
                    raise ValueError(f"email {email} is already taken")
            self._extra_index[user.id] = self._size + len(self._extra)
            self._extra.append(user)
            self._current_extra[user.id] = user
            for email in (user.primary_email, *user.aliases):
                self._extra_emails[email.lower()] = user.id
            bisect.insort(self._extra_sorted, (user.primary_email.lower(), user.id))
            self._held[user.id] = []
            if user.org_unit_path not in self.org_units:
                self.org_units.append(user.org_unit_path)
            return user

    def delete_user(self, user_id: str) -> None:
        """Delete a user: their tokens go with them; users.list and tokens.list stop knowing them."""
        with self.lock:
            user = self._current_extra.pop(user_id, None)
            if user is not None:
                for email in (user.primary_email, *user.aliases):
                    self._extra_emails.pop(email.lower(), None)
                self._extra_sorted.remove((user.primary_email.lower(), user.id))
            elif self._key_of_id(user_id) is None or user_id in self._deleted:
                raise KeyError(user_id)
            else:
                self._deleted.add(user_id)
                self._held_users.pop(user_id, None)
            self._held.pop(user_id, None)

    def find_user(self, key: str) -> DirectoryUser | None:
        """users/{userKey}: a numeric id, a primary email or an alias."""
        user = self.users.get(key)
        if user is not None or not isinstance(key, str):
            return user
        email = key.lower()
        extra = self._extra_emails.get(email)
        if extra is not None:
            return self._current_extra[extra]
        person = self._aliases.get(email)
        if person is None:
            person = self._key_of_email(email)
        if person is None or self._user_id(person) in self._deleted:
            return None
        return self._user(person)

    def revoke(self, user_id: str, client_id: str, *, at=None) -> bool:
        """Access is revoked: a `revoke` event (the user's tokens are held from then on)."""
        with self.lock:
            if user_id in self.tokens:
                self.tokens[user_id]  # noqa: B018 -- indexing holds the list GoogleTenant.revoke changes
            return super().revoke(user_id, client_id, at=at)

    def users_by_email(self) -> Sequence[tuple[str, str]]:
        """(lowercase primary email, id) of users, sorted: users.list pages through it. Deleted
        users of the district stay in it (users.list skips users it cannot find)."""
        with self.lock:
            return _EmailView(self, list(self._extra_sorted))

    def all_tokens(self) -> Iterator[tuple[str, Token]]:
        """(user id, token) for every current token: the ground truth a full scan must find."""
        for user_id in list(self.users):
            for token in self.tokens.get(user_id, ()):
                yield user_id, token

    def _churn_population(self) -> list[str]:
        # Current users' ids, sorted as sorted(self.users) sorts them (all ids have 21 digits).
        base = (str(_ID_BASE + bits) for bits in self._id_sorted)
        base = (user_id for user_id in base if user_id not in self._deleted)
        return list(heapq.merge(base, sorted(self._current_extra)))

    # -- the token audit log ----------------------------------------------------------------

    def _load_events(self, history: bool) -> None:
        """Each grant's authorization and last use as events, sorted by time, made once."""
        district = self.district
        cutoff = -2**63 if history else to_micros(district.now - RETENTION)
        micros, names, users, clients, scope_sets = array("q"), array("b"), array("i"), array("i"), array("i")
        authorize, activity = _EVENT_CODE["authorize"], _EVENT_CODE["activity"]
        client_index = {id(app): self._client_index[client.client_id] for app, client in
                        ((app, self._clients_of_app[id(app)]) for app in district.apps if id(app) in self._clients_of_app)}
        for key in range(self._size):
            for grant in district.grants_of(key):
                if grant.provider != "google":
                    continue
                client, scope_set = client_index[id(grant.app)], self._scope_set(grant.scopes)
                for moment, name in ((grant.authorized_at, authorize), (grant.last_used_at, activity)):
                    if moment is not None and (at := to_micros(moment)) >= cutoff:
                        micros.append(at)
                        names.append(name)
                        users.append(key)
                        clients.append(client)
                        scope_sets.append(scope_set)
        order = _time_order(micros)
        log = self.events
        log.micros = array("q", (micros[i] for i in order))
        del micros
        log.names = array("b", (names[i] for i in order))
        del names
        log.users = array("i", (users[i] for i in order))
        del users
        log.clients = array("i", (clients[i] for i in order))
        del clients
        log.scope_sets = array("i", (scope_sets[i] for i in order))
        log.seqs = array("q", range(len(order)))
        log.next_seq = len(order)


def district_school(district: OnDemandDistrict, key: int) -> str:
    """The school of the district's person `key`."""
    from ..district import SCHOOLS

    index = key if key < district.staff_total else key - district.staff_total
    return SCHOOLS[index % len(SCHOOLS)][0]


def _time_order(micros: array) -> array:
    """Indexes of `micros` in time order, ties in index order (a stable sort, a day at a time,
    so no list of every index is made)."""
    if not micros:
        return array("i")
    first = min(micros)
    days = (max(micros) - first) // _DAY_MICROS + 1
    counts = [0] * (days + 1)
    for at in micros:
        counts[(at - first) // _DAY_MICROS + 1] += 1
    for day in range(days):
        counts[day + 1] += counts[day]
    starts = counts[:-1]
    order = array("i", bytes(4 * len(micros)))
    place = list(starts)
    for index, at in enumerate(micros):
        day = (at - first) // _DAY_MICROS
        order[place[day]] = index
        place[day] += 1
    for day in range(days):
        start, end = starts[day], counts[day + 1]
        if end - start > 1:
            order[start:end] = array("i", sorted(order[start:end], key=micros.__getitem__))
    return order


class _EmailView(Sequence):
    """users_by_email() of an OnDemandGoogleTenant: the district's users in address order with
    the users added since merged in, each entry made when read."""

    def __init__(self, tenant: OnDemandGoogleTenant, extra: list[tuple[str, str]]):
        self._tenant, self._extra = tenant, extra
        self._order = order = tenant._email_order
        # Where each added user falls among the district's: its place in the merged sequence.
        self._places = [bisect.bisect_left(order, item, key=self._base_entry) + n for n, item in enumerate(extra)]

    def _base_entry(self, key: int) -> tuple[str, str]:
        return self._tenant.district.email(key), self._tenant._user_id(key)

    def __len__(self) -> int:
        return len(self._order) + len(self._extra)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return (self[i] for i in range(*index.indices(len(self))))
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(index)
        before = bisect.bisect_left(self._places, index)
        if before < len(self._places) and self._places[before] == index:
            return self._extra[before]
        return self._base_entry(self._order[index - before])


class _Users(MutableMapping):
    """GoogleTenant.users: current users by id."""

    def __init__(self, tenant: OnDemandGoogleTenant):
        self._tenant = tenant

    def get(self, user_id: str, default: Any = None) -> Any:
        tenant = self._tenant
        user = tenant._current_extra.get(user_id)
        if user is not None:
            return user
        if user_id in tenant._deleted or user_id in tenant._extra_index:
            return default
        key = tenant._key_of_id(user_id)
        return default if key is None else tenant._user(key)

    def __getitem__(self, user_id: str) -> DirectoryUser:
        user = self.get(user_id)
        if user is None:
            raise KeyError(user_id)
        if user_id not in self._tenant._current_extra:
            self._tenant._held_users[user_id] = user  # held: a change to it stays
        return user

    def __contains__(self, user_id: object) -> bool:
        return self.get(user_id) is not None

    def __setitem__(self, user_id: str, user: DirectoryUser) -> None:
        if user_id != user.id:
            raise ValueError("a user is stored under their own id")
        if user_id in self:
            raise ValueError(f"user {user_id} already exists; delete it first")
        self._tenant.add_user(user)

    def __delitem__(self, user_id: str) -> None:
        self._tenant.delete_user(user_id)

    def __iter__(self) -> Iterator[str]:
        tenant = self._tenant
        yield from list(tenant._current_extra)
        for key in range(tenant._size):
            user_id = tenant._user_id(key)
            if user_id not in tenant._deleted:
                yield user_id

    def values(self) -> _Values:
        return _Values(self._tenant)

    def __len__(self) -> int:
        tenant = self._tenant
        return tenant._size - len(tenant._deleted) + len(tenant._current_extra)


class _Values:
    """users.values(): each current user, made as the iteration reaches them."""

    def __init__(self, tenant: OnDemandGoogleTenant):
        self._tenant = tenant

    def __iter__(self) -> Iterator[DirectoryUser]:
        tenant = self._tenant
        yield from list(tenant._current_extra.values())
        for key in range(tenant._size):
            user = tenant._user(key)
            if user.id not in tenant._deleted:
                yield user

    def __len__(self) -> int:
        return len(self._tenant.users)


class _Tokens(MutableMapping):
    """GoogleTenant.tokens: each current user's tokens. Reading one (`get`) makes a new list for
    a user whose tokens never changed; indexing (`tokens[id]`, what GoogleTenant's writes use)
    holds it from then on, so changing that list changes the tenant."""

    def __init__(self, tenant: OnDemandGoogleTenant):
        self._tenant = tenant

    def get(self, user_id: str, default: Any = None) -> Any:
        tokens = self._tenant._current_tokens(user_id)
        return default if tokens is None else tokens

    def __getitem__(self, user_id: str) -> list[Token]:
        tenant = self._tenant
        tokens = tenant._held.get(user_id)
        if tokens is None:
            tokens = tenant._current_tokens(user_id)
            if tokens is None:
                raise KeyError(user_id)
            tenant._held[user_id] = tokens
        return tokens

    def __contains__(self, user_id: object) -> bool:
        return user_id in self._tenant.users

    def __setitem__(self, user_id: str, tokens: list[Token]) -> None:
        if user_id not in self._tenant.users:
            raise KeyError(user_id)
        self._tenant._held[user_id] = tokens

    def __delitem__(self, user_id: str) -> None:
        if user_id not in self._tenant.users:
            raise KeyError(user_id)
        self._tenant._held[user_id] = []

    def __iter__(self) -> Iterator[str]:
        return iter(self._tenant.users)

    def __len__(self) -> int:
        return len(self._tenant.users)

    def items(self):
        return ((user_id, self.get(user_id, [])) for user_id in self._tenant.users)


class _People(Sequence):
    """GoogleTenant.people: every user ever, deleted ones too (the audit log refers to them)."""

    def __init__(self, tenant: OnDemandGoogleTenant):
        self._tenant = tenant

    def __len__(self) -> int:
        return self._tenant._size + len(self._tenant._extra)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        tenant = self._tenant
        if index < 0:
            index += len(self)
        if 0 <= index < tenant._size:
            return tenant._user(index)
        return tenant._extra[index - tenant._size]


class _PersonIndex(Mapping):
    """GoogleTenant._person_index: a user's id -> their place in `people`."""

    def __init__(self, tenant: OnDemandGoogleTenant):
        self._tenant = tenant

    def __getitem__(self, user_id: str) -> int:
        tenant = self._tenant
        index = tenant._extra_index.get(user_id)
        if index is None:
            index = tenant._key_of_id(user_id)
        if index is None:
            raise KeyError(user_id)
        return index

    def __iter__(self) -> Iterator[str]:
        return (person.id for person in self._tenant.people)

    def __len__(self) -> int:
        return len(self._tenant.people)


__all__ = ["OnDemandGoogleTenant"]
