"""An Entra ID tenant of any size that makes its users and delegated grants when asked for.

`microsoft_tenant()` holds every user and grant of a district: at a million accounts, a
million user dicts and nine million DelegatedGrant tuples, gigabytes. `OnDemandMicrosoftTenant`
serves an `OnDemandDistrict` (emulators.district_on_demand) the same way while holding only:

- a sorted array that finds an account by object id (the high 64 bits of each id, sorted)
  and, per person, where their delegated grants start in the tenant-wide list (a prefix sum);
- per app (client service principal), the places of its grants among the people's: one
  32-bit number a grant (the person, and which of their grants);
- what is small anyway: service principals, app role assignments, the admin-consent grants,
  sign-in activities, consent requests;
- what changed since: accounts disabled, removed or added, grants deleted, narrowed or made
  (a sorted list of the removed places per list, the rest in dicts).

A person and their grants are made again from the district when a page asks for them (each
person's account has a random stream of its own, emulators.microsoft.tenant.member_user),
so the emulator's answers, paging and changes are those of a MicrosoftTenant built by
`microsoft_tenant(district.materialize())`: the tests compare the two page by page.

The lists Graph pages through (`users`, `grants`, `grants_by_client[...]`) are read-only
sequences; change the tenant through its methods (delete_grant, disable_users, ...).
"""

from __future__ import annotations

import base64
import bisect
import datetime as dt
import functools
import random
import uuid
from array import array
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple

from ..district_on_demand import OnDemandDistrict
from .tenant import (
    DEFAULT_CLIENT_SECRET, GRAPH_APP_ID, GROUPS, LOW_IMPACT_PERMISSIONS, SCANNER_PERMISSIONS, AppRegistration, DelegatedGrant,
    MicrosoftTenant, _TenantParts, add_consent_requests, admin_consent_request_policy, group_id, guest_id, guest_user, member_id,
    member_user, permission_classification,
)

# An app's list holds one 32-bit code a grant: the person (22 bits), which of their grants
# (7 bits: at most 2 * MAX_GRANTS_PER_USER, Graph and SharePoint), and how to make it without
# drawing the person's grants again: on SharePoint, with the app's scope creep, or neither of
# those ways (SLOW: drawn again).
_FLAG_BITS = 3
_SUB_BITS = 7
_SHIFT = _SUB_BITS + _FLAG_BITS
_SUB_MASK = (1 << _SUB_BITS) - 1
_SLOW, _SHAREPOINT, _CREEP = 4, 2, 1
_MAX_PEOPLE = 1 << (32 - _SHIFT)


def _scope_texts(app: Any) -> tuple[str, str, str]:
    """An app's delegated grants' scope texts, as _TenantParts.delegated writes them: without and
    with the app's scope creep, and on SharePoint."""
    def text(scopes: tuple[str, ...]) -> str:
        return app.microsoft_scope_text if app.microsoft_scope_text and scopes == app.microsoft_scopes else " ".join(scopes)

    plain = app.scopes("microsoft")
    return text(plain), text(plain + app.creep("microsoft")), " ".join(app.sharepoint_scopes)


class _Who(NamedTuple):
    """What emulators.district._consent_requests reads of a person."""

    key: int
    role: str
    level: str


class _Holes:
    """Places removed from a base sequence: a list's index <-> its place in the base."""

    def __init__(self) -> None:
        self.sorted: list[int] = []
        self.set: set[int] = set()

    def add(self, place: int) -> bool:
        if place in self.set:
            return False
        self.set.add(place)
        bisect.insort(self.sorted, place)
        return True

    def __len__(self) -> int:
        return len(self.sorted)

    def place(self, index: int) -> int:
        """The base place of the list's `index` (the smallest place with index + 1 kept places up to it)."""
        holes = self.sorted
        if not holes or holes[0] > index:
            return index
        low, high = index, index + len(holes)
        while low < high:
            middle = (low + high) // 2
            if middle + 1 - bisect.bisect_right(holes, middle) >= index + 1:
                high = middle
            else:
                low = middle + 1
        return low


class _View(Sequence):
    """A base sequence with holes, then items appended since: what a MicrosoftTenant list would hold."""

    def __init__(self, base_len: Any, base_item: Any, holes: _Holes, appended: Any):
        self._base_len, self._base_item, self._holes, self._appended = base_len, base_item, holes, appended

    def _kept(self) -> int:
        return self._base_len() - len(self._holes)

    def __len__(self) -> int:
        return self._kept() + len(self._appended())

    def __getitem__(self, index):
        kept, appended = self._kept(), self._appended()
        size = kept + len(appended)
        if isinstance(index, slice):
            return [self._item(i, kept, appended) for i in range(*index.indices(size))]
        if index < 0:
            index += size
        if not 0 <= index < size:
            raise IndexError(index)
        return self._item(index, kept, appended)

    def _item(self, index: int, kept: int, appended: Sequence) -> Any:
        if index < kept:
            return self._base_item(self._holes.place(index))
        return appended[index - kept]

    def __iter__(self) -> Iterator:
        kept, appended = self._kept(), self._appended()
        for index in range(kept + len(appended)):
            yield self._item(index, kept, appended)


class OnDemandMicrosoftTenant(MicrosoftTenant):
    """An OnDemandDistrict as Entra ID holds it (see the module's docstring): the same tenant as
    `microsoft_tenant(district.materialize(), ...)` with the same arguments."""

    def __init__(self, district: OnDemandDistrict, *, tenant_id: str | None = None, client_id: str | None = None,
                 client_secret: str | None = DEFAULT_CLIENT_SECRET, certificate_pem: str | None = None,
                 permissions: Iterable[str] = SCANNER_PERMISSIONS, premium: bool = True, guests: int = 0):
        self.district = district
        # A page of grants asks for each person several times (each of their grants).
        self._person_grants = functools.lru_cache(maxsize=512)(self._make_person_grants)
        seed, size = district.seed, district.size
        self._size, self._guests = size, guests
        rng = random.Random(f"microsoft:{seed}")  # as microsoft_tenant()
        tenant_id = tenant_id or str(uuid.UUID(int=rng.getrandbits(128), version=4))
        client_id = client_id or str(uuid.UUID(int=rng.getrandbits(128), version=4))
        self._removed_users = _Holes()  # places among the district's accounts
        self._changed_users: dict[str, dict] = {}  # the district's accounts as changed since (disabled)
        self._added_users: dict[str, dict] = {}  # accounts added since, by id (in the order added)
        self.groups = [{"id": group_id(tenant_id, name), "displayName": name, "members": _GroupMembers(self, role)}
                       for name, role in GROUPS]

        parts = self._parts = _TenantParts(district, tenant_id, client_id, permissions, rng)
        self._admin = list(parts.admin_grants)
        # Delegated grants: the admin-consent ones, then each person's in order, then the IT
        # technician's Microsoft tools (as microsoft_tenant() lists them), as "person" `size`.
        starts = array("I", [0])
        by_client: dict[str, array] = {}
        last_use: dict[str, dt.datetime] = {}
        first: list = []
        ids = array("Q")  # the high 64 bits of each account's id: the people's, then the guests'
        if size + 1 >= _MAX_PEOPLE:
            raise ValueError(f"an on-demand tenant holds fewer than {_MAX_PEOPLE:,} accounts")
        sharepoint = parts.sharepoint["id"]
        self._app_of: dict[str, Any] = {}  # client -> its App (None: two apps share it, grants drawn again)
        plain_scopes = {id(app): app.scopes("microsoft") for app in district.apps}
        crept_scopes = {id(app): app.scopes("microsoft") + app.creep("microsoft") for app in district.apps}
        for key in range(size + 1):
            grants = self._district_grants(key, first)
            if key == 0:
                first = grants
            if key < size:
                user_id = member_id(seed, key)
                ids.append(uuid.UUID(user_id).int >> 64)
            else:
                user_id = member_id(seed, 0)  # the IT technician's tools
            made = 0
            for grant in grants:
                app = grant.app
                flags = 0 if grant.scopes == plain_scopes[id(app)] else _CREEP if grant.scopes == crept_scopes[id(app)] else _SLOW
                for delegated in parts.delegated(grant, user_id, last_use):
                    client = delegated.client_id
                    places = by_client.get(client)
                    if places is None:
                        places = by_client[client] = array("I")
                        self._app_of[client] = app
                    elif self._app_of[client] is not app:
                        self._app_of[client] = None
                    places.append(key << _SHIFT | made << _FLAG_BITS | flags | (_SHAREPOINT if delegated.resource_id == sharepoint else 0))
                    made += 1
            starts.append(starts[-1] + made)
        self._starts, self._by_client = starts, by_client
        ids.extend(uuid.UUID(guest_id(seed, n)).int >> 64 for n in range(guests))
        order = sorted(range(len(ids)), key=ids.__getitem__)
        self._id_order = array("i", order)
        self._id_sorted = array("Q", (ids[place] for place in order))
        del ids, order
        self._admin_of = {grant.client_id: grant for grant in self._admin}
        # What each app's grants say (parts.delegated's texts): (plain, with scope creep, SharePoint).
        self._texts = {client: _scope_texts(app) for client, app in self._app_of.items() if app is not None}
        self._removed_grants = _Holes()  # places in the tenant-wide list
        self._removed_by_client: dict[str, _Holes] = {}
        self._narrowed: dict[str, DelegatedGrant] = {}  # the district's grants whose scope changed, by id
        self._made: dict[str, DelegatedGrant] = {}  # grants made since, by id (in the order made)
        self._made_by_client: dict[str, list[DelegatedGrant]] | None = None

        super().__init__(
            tenant_id=tenant_id, display_name=district.name, domains=[district.domain, district.student_domain],
            registration=AppRegistration(client_id=client_id, client_secret=client_secret, certificate_pem=certificate_pem),
            premium=premium, users=[], groups=self.groups, subscribed_skus=parts.skus, service_principals=parts.sps,
            grants=[], assignments=parts.assignments, sign_in_activities=parts.sign_in_activities(last_use),
            admin_consent_request_policy=admin_consent_request_policy(True, [member_id(seed, 0)] if size else []),
            permission_classifications=[permission_classification(p) for p in LOW_IMPACT_PERMISSIONS],
        )
        if "microsoft" in district.providers and size:
            from ..district import _consent_requests

            asks = _consent_requests(_People(district), district.apps, seed, district.now)
            add_consent_requests(self, asks, lambda key: member_id(seed, key), district.now)

    # -- the district, made when asked for ----------------------------------------------------

    def _district_grants(self, key: int, first: list) -> list:
        """Person `key`'s Microsoft grants (key == size: the IT technician's tools, given person 0's)."""
        district = self.district
        if key == self._size:
            return district.technician_grants(first)
        # Only the person's role and level choose their grants: the person need not be made.
        return [grant for grant in district.grants_of(key, _People(district)[key]) if grant.provider == "microsoft"]

    def _make_person_grants(self, key: int) -> tuple[DelegatedGrant, ...]:
        """The delegated grants person `key` had when the district was made."""
        first = self._district_grants(0, []) if key == self._size and self._size else []
        user_id = member_id(self.district.seed, key if key < self._size else 0)
        return tuple(made for grant in self._district_grants(key, first) for made in self._parts.delegated(grant, user_id))

    def _base_grant(self, place: int) -> DelegatedGrant:
        """The district's grant at this place of the tenant-wide list, as changed since."""
        admin = len(self._admin)
        if place < admin:
            grant = self._admin[place]
        else:
            place -= admin
            key = bisect.bisect_right(self._starts, place) - 1
            grant = self._person_grants(key)[place - self._starts[key]]
        return self._narrowed.get(grant.id, grant) if self._narrowed else grant

    def _base_client_grant(self, client: str, place: int) -> DelegatedGrant:
        admin = self._admin_of.get(client)
        if admin is not None:
            if place == 0:
                return self._narrowed.get(admin.id, admin) if self._narrowed else admin
            place -= 1
        code = self._by_client[client][place]
        key = code >> _SHIFT
        texts = self._texts.get(client)
        if code & _SLOW or texts is None:
            grant = self._person_grants(key)[code >> _FLAG_BITS & _SUB_MASK]
        else:  # made from the code alone: the district's draws for this person are not needed
            user_id = member_id(self.district.seed, key if key < self._size else 0)
            if code & _SHAREPOINT:
                grant = DelegatedGrant(client, "Principal", user_id, self._parts.sharepoint["id"], texts[2])
            else:
                grant = DelegatedGrant(client, "Principal", user_id, self._parts.graph["id"], texts[code & _CREEP])
        return self._narrowed.get(grant.id, grant) if self._narrowed else grant

    def _client_len(self, client: str) -> int:
        return (client in self._admin_of) + len(self._by_client.get(client, ()))

    def _made_of(self, client: str) -> list[DelegatedGrant]:
        """The grants made since for this client, in the order made."""
        with self._ids_lock:
            if self._made_by_client is None:
                made: dict[str, list[DelegatedGrant]] = {}
                for grant in self._made.values():
                    made.setdefault(grant.client_id, []).append(grant)
                self._made_by_client = made
            return self._made_by_client.get(client, [])

    def _made_list(self) -> list[DelegatedGrant]:
        with self._ids_lock:
            return list(self._made.values())

    def _added_list(self) -> list[dict]:
        with self._ids_lock:
            return list(self._added_users.values())

    def _key_of_id(self, user_id: Any) -> int | None:
        """The place among the district's accounts (people, then guests) of this object id, removed or not."""
        try:
            number = uuid.UUID(user_id).int
        except (TypeError, ValueError, AttributeError):
            return None
        high = number >> 64
        position = bisect.bisect_left(self._id_sorted, high)
        while position < len(self._id_sorted) and self._id_sorted[position] == high:
            key = self._id_order[position]
            if self._base_id(key) == user_id:
                return key
            position += 1
        return None

    def _base_id(self, place: int) -> str:
        seed = self.district.seed
        return member_id(seed, place) if place < self._size else guest_id(seed, place - self._size)

    def _base_user(self, place: int) -> dict:
        """The district's account at this place, as changed since (a new dict when unchanged)."""
        user_id = self._base_id(place)
        changed = self._changed_users.get(user_id)
        if changed is not None:
            return changed
        seed = self.district.seed
        return member_user(self.district.person(place), seed) if place < self._size else guest_user(place - self._size, seed)

    def _current_grant(self, grant_id: str) -> tuple[DelegatedGrant, int | None] | None:
        """The current grant with this id and its place in the tenant-wide list (None: made since)."""
        made = self._made.get(grant_id)
        if made is not None:
            return made, None
        found = self._locate(grant_id)
        if found is None or found[1] in self._removed_grants.set:
            return None
        grant, place = found
        return self._narrowed.get(grant_id, grant), place

    def _locate(self, grant_id: str) -> tuple[DelegatedGrant, int] | None:
        """The district's grant with this id (removed or not) and its place in the tenant-wide list."""
        for place, grant in enumerate(self._admin):
            if grant.id == grant_id:
                return grant, place
        try:
            raw = base64.urlsafe_b64decode(grant_id + "=" * (-len(grant_id) % 4))
        except (ValueError, TypeError):
            return None
        if len(raw) != 48:
            return None
        principal = str(uuid.UUID(bytes_le=raw[32:]))
        key = self._key_of_id(principal)
        if key is None or key >= self._size:
            return None
        for person in ((key, self._size) if key == 0 else (key,)):
            for index, grant in enumerate(self._person_grants(person)):
                if grant.id == grant_id:
                    return grant, len(self._admin) + self._starts[person] + index
        return None

    def _client_place(self, grant: DelegatedGrant, place: int) -> int:
        """A district grant's place in its client's list, from its place in the tenant-wide list."""
        admin = len(self._admin)
        if place < admin:
            return 0
        place -= admin
        key = bisect.bisect_right(self._starts, place) - 1
        code = key << _SHIFT | (place - self._starts[key]) << _FLAG_BITS
        return (grant.client_id in self._admin_of) + bisect.bisect_left(self._by_client[grant.client_id], code)

    def _remove_base_grant(self, grant: DelegatedGrant, place: int) -> None:
        if self._removed_grants.add(place):
            holes = self._removed_by_client.setdefault(grant.client_id, _Holes())
            holes.add(self._client_place(grant, place))
        self._narrowed.pop(grant.id, None)

    def _remove_made_grant(self, grant_id: str) -> None:
        if self._made.pop(grant_id, None) is not None:
            self._made_by_client = None

    def _add_made_grant(self, grant: DelegatedGrant) -> None:
        self._made[grant.id] = grant
        self._made_by_client = None

    # -- MicrosoftTenant's lookups and writes over the district and what changed ---------------

    def _reindex(self) -> None:
        """Only what is small is indexed again: service principals, assignments and their writes."""
        if self._assignment_ids_written():
            self.assignments = list(self.assignment_ids().values())
        self.sp_by_id = {sp["id"]: sp for sp in self.service_principals}
        self.sp_by_app_id = {sp["appId"]: sp for sp in self.service_principals}
        self.group_by_id = {group["id"]: group for group in self.groups}
        by_principal: dict[str, list] = {}
        by_resource: dict[str, list] = {}
        for assignment in self.assignments:
            by_principal.setdefault(assignment.principal_id, []).append(assignment)
            by_resource.setdefault(assignment.resource_id, []).append(assignment)
        self.assignments_by_principal, self.assignments_by_resource = by_principal, by_resource
        self._assignment_ids = None
        self._written = self.stale = False
        self.users = _View(lambda: self._size + self._guests, self._base_user, self._removed_users,
                           self._added_list)
        self.user_by_id = _UserIndex(self)
        self.grants = _View(lambda: len(self._admin) + self._starts[-1], self._base_grant, self._removed_grants,
                            self._made_list)
        self.grants_by_client = _ClientGrants(self)
        self._grant_ids = None

    def _assignment_ids_written(self) -> bool:
        return bool(getattr(self, "_written", False)) and getattr(self, "_assignment_ids", None) is not None

    def grant_ids(self) -> Mapping[str, DelegatedGrant]:
        return _GrantIndex(self)

    def grant_by_id(self, grant_id: str) -> DelegatedGrant | None:
        with self._ids_lock:
            found = self._current_grant(grant_id)
            return None if found is None else found[0]

    def delete_grant(self, grant_id: str) -> bool:
        with self._ids_lock:
            found = self._current_grant(grant_id)
            if found is None:
                return False
            grant, place = found
            if place is None:
                self._remove_made_grant(grant_id)
            else:
                self._remove_base_grant(grant, place)
            return True

    def set_grant_scope(self, grant_id: str, scope: str) -> DelegatedGrant | None:
        with self._ids_lock:
            found = self._current_grant(grant_id)
            if found is None:
                return None
            grant, place = found
            grant = grant._replace(scope=scope)
            if place is None:
                self._made[grant_id] = grant
                self._made_by_client = None
            else:
                self._narrowed[grant_id] = grant
            return grant

    def create_grant(self, client_id: str, consent_type: str, principal_id: str | None, resource_id: str, scope: str) -> DelegatedGrant | None:
        with self._ids_lock:
            grant = DelegatedGrant(client_id, consent_type, principal_id, resource_id, scope)
            if self._current_grant(grant.id) is not None:
                return None
            self._add_made_grant(grant)
            return grant

    def add_grant(self, client_app_id: str, scope: str, *, user_id: str | None = None,
                  resource_app_id: str = GRAPH_APP_ID) -> DelegatedGrant:
        with self._ids_lock:
            grant = DelegatedGrant(self.sp_by_app_id[client_app_id]["id"], "Principal" if user_id else "AllPrincipals",
                                   user_id, self.sp_by_app_id[resource_app_id]["id"], scope)
            self.delete_grant(grant.id)
            self._add_made_grant(grant)
            return grant

    def revoke_grants(self, client_app_id: str, *, user_id: str | None = None) -> int:
        with self._ids_lock:
            client = self.sp_by_app_id[client_app_id]["id"]
            gone = [grant.id for grant in self.grants_by_client.get(client, ())
                    if user_id is None or grant.principal_id == user_id]
            for grant_id in gone:
                self.delete_grant(grant_id)
            return len(gone)

    def churn(self, fraction: float, *, seed: int = 0) -> dict[str, int]:
        """As MicrosoftTenant.churn, reading only the chosen accounts' grants and each app's first."""
        with self._ids_lock:
            rng = random.Random(seed)
            members = self.member_ids()
            chosen = set(rng.sample(members, max(1, round(len(members) * fraction)))) if members else set()
            graph = self.sp_by_app_id[GRAPH_APP_ID]["id"]
            scopes_of: dict[str, str] = {}  # client -> what a user consents to for it (its first such grant's scope)
            for client in list(self._by_client) + [c for c in self._made_client_ids() if c not in self._by_client]:
                first = next((g for g in self.grants_by_client.get(client, ())
                              if g.consent_type == "Principal" and g.resource_id == graph), None)
                if first is not None:
                    scopes_of[client] = first.scope
            clients = sorted(scopes_of)
            dropped, added = [], []
            for user in sorted(chosen):
                held = [g for g in self.user_grants(user) if g.consent_type == "Principal" and g.resource_id == graph]
                if held and rng.random() < 0.5:
                    dropped.append(rng.choice(held).id)
                    continue
                holding = {g.client_id for g in held}
                candidates = [client for client in clients if client not in holding]
                if candidates:
                    client = rng.choice(candidates)
                    added.append(DelegatedGrant(client, "Principal", user, graph, scopes_of[client]))
            for grant_id in dropped:
                self.delete_grant(grant_id)
            for grant in added:
                self._add_made_grant(grant)
            return {"users": len(chosen), "authorized": len(added), "revoked": len(dropped)}

    def _made_client_ids(self) -> list[str]:
        return list(dict.fromkeys(grant.client_id for grant in self._made.values()))

    def user_grants(self, user_id: str) -> list[DelegatedGrant]:
        """An account's current delegated grants, in the tenant-wide list's order."""
        found: list[DelegatedGrant] = []
        key = self._key_of_id(user_id)
        if key is not None and key < self._size and key not in self._removed_users.set:
            admin = len(self._admin)
            for person in ((key, self._size) if key == 0 else (key,)):
                for index in range(self._starts[person], self._starts[person + 1]):
                    if admin + index not in self._removed_grants.set:
                        found.append(self._base_grant(admin + index))
        return found + [grant for grant in self._made.values() if grant.principal_id == user_id]

    # -- accounts ------------------------------------------------------------------------------

    def member_ids(self, *, enabled: bool = False) -> list[str]:
        with self._ids_lock:
            district, removed = self.district, self._removed_users.set
            ids = []
            for key in range(self._size):
                if key in removed:
                    continue
                user_id = member_id(district.seed, key)
                changed = self._changed_users.get(user_id)
                if enabled and not (changed["accountEnabled"] if changed is not None else not district.suspended[key]):
                    continue
                ids.append(user_id)
            ids += [user["id"] for user in self._added_users.values()
                    if user.get("userType") != "Guest" and (user.get("accountEnabled") or not enabled)]
            return sorted(ids)

    def disable_users(self, ids: Iterable[str]) -> None:
        with self._ids_lock:
            for user_id in ids:
                user = self._added_users.get(user_id)
                if user is None:
                    user = self.user_by_id.get(user_id)
                    if user is None:
                        continue
                    self._changed_users[user_id] = user
                user["accountEnabled"] = False

    def remove_users(self, ids: Iterable[str]) -> None:
        with self._ids_lock:
            for user_id in set(ids):
                for grant in self.user_grants(user_id):
                    self.delete_grant(grant.id)
                if self._added_users.pop(user_id, None) is not None:
                    continue
                key = self._key_of_id(user_id)
                if key is not None:
                    self._removed_users.add(key)
                    self._changed_users.pop(user_id, None)

    def add_users(self, users: Iterable[dict]) -> None:
        with self._ids_lock:
            for user in users:
                if user["id"] in self.user_by_id:
                    raise ValueError(f"user {user['id']} already exists")
                self._added_users[user["id"]] = user

    def group_members(self, group_id: str) -> Sequence[dict]:
        group = self.group_by_id.get(group_id)
        if group is None:
            return []
        return _MemberUsers(group["members"])

    def to_json(self) -> dict[str, Any]:
        """Plain JSON data of every account and grant: for small tenants (a MicrosoftTenant reads it)."""
        data = super().to_json()
        data["users"] = list(self.users)
        data["groups"] = [{**group, "members": list(group["members"])} for group in self.groups]
        data["oauth2_permission_grants"] = [g._asdict() for g in self.grants]
        return data


class _People(Sequence):
    """The district's people as _consent_requests reads them, made as it goes."""

    def __init__(self, district: OnDemandDistrict):
        self._district = district

    def __len__(self) -> int:
        return self._district.size

    def __getitem__(self, key):
        district = self._district
        if isinstance(key, slice):
            return [self[i] for i in range(*key.indices(len(self)))]
        from ..district import SCHOOLS

        staff = key < district.staff_total
        index = key if staff else key - district.staff_total
        return _Who(key, "staff" if staff else "student", SCHOOLS[index % len(SCHOOLS)][1])

    def __iter__(self) -> Iterator[_Who]:
        for key in range(len(self)):
            yield self[key]


class _UserIndex(Mapping):
    """MicrosoftTenant.user_by_id: current accounts by object id."""

    def __init__(self, tenant: OnDemandMicrosoftTenant):
        self._tenant = tenant

    def get(self, user_id: Any, default: Any = None) -> Any:
        tenant = self._tenant
        added = tenant._added_users.get(user_id)
        if added is not None:
            return added
        key = tenant._key_of_id(user_id)
        if key is None or key in tenant._removed_users.set:
            return default
        return tenant._base_user(key)

    def __getitem__(self, user_id: str) -> dict:
        user = self.get(user_id)
        if user is None:
            raise KeyError(user_id)
        return user

    def __contains__(self, user_id: object) -> bool:
        return self.get(user_id) is not None

    def __iter__(self) -> Iterator[str]:
        return (user["id"] for user in self._tenant.users)

    def __len__(self) -> int:
        return len(self._tenant.users)


class _GrantIndex(Mapping):
    """MicrosoftTenant.grant_ids(): current delegated grants by id."""

    def __init__(self, tenant: OnDemandMicrosoftTenant):
        self._tenant = tenant

    def __getitem__(self, grant_id: str) -> DelegatedGrant:
        grant = self._tenant.grant_by_id(grant_id)
        if grant is None:
            raise KeyError(grant_id)
        return grant

    def __iter__(self) -> Iterator[str]:
        return (grant.id for grant in self._tenant.grants)

    def __len__(self) -> int:
        return len(self._tenant.grants)


class _ClientGrants(Mapping):
    """MicrosoftTenant.grants_by_client: each client service principal's current grants."""

    def __init__(self, tenant: OnDemandMicrosoftTenant):
        self._tenant = tenant

    def __getitem__(self, client: str) -> _View:
        tenant = self._tenant
        if not tenant._client_len(client) and not tenant._made_of(client):
            raise KeyError(client)
        holes = tenant._removed_by_client.setdefault(client, _Holes())
        view = _View(lambda: tenant._client_len(client), functools.partial(tenant._base_client_grant, client), holes,
                     lambda: tenant._made_of(client))
        if not len(view):
            raise KeyError(client)
        return view

    def __iter__(self) -> Iterator[str]:
        tenant = self._tenant
        for client in dict.fromkeys([*tenant._admin_of, *tenant._by_client, *tenant._made_client_ids()]):
            if client in self:
                yield client

    def __len__(self) -> int:
        return sum(1 for _ in self)


class _GroupMembers(Sequence):
    """A group's "members": the ids of the district's current accounts of one role (staff
    first in the district, then students)."""

    def __init__(self, tenant: OnDemandMicrosoftTenant, role: str):
        self.tenant, self._role = tenant, role

    def _range(self) -> range:
        tenant = self.tenant
        staff = min(tenant._size, tenant.district.staff_total)
        return range(0, staff) if self._role == "staff" else range(staff, tenant._size)

    def keys(self) -> list[int]:
        removed = self.tenant._removed_users.set
        return [key for key in self._range() if key not in removed]

    def __len__(self) -> int:
        removed = self.tenant._removed_users.set
        span = self._range()
        return len(span) - sum(1 for key in removed if key in span)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        keys = self.keys() if self.tenant._removed_users.set else self._range()
        return member_id(self.tenant.district.seed, keys[index])

    def __contains__(self, user_id: object) -> bool:
        key = self.tenant._key_of_id(user_id)
        return key is not None and key in self._range() and key not in self.tenant._removed_users.set


class _MemberUsers(Sequence):
    """A group's current members as user objects, made when a page reads them."""

    def __init__(self, members: _GroupMembers):
        self._members = members
        self._keys = members.keys() if members.tenant._removed_users.set else members._range()

    def __len__(self) -> int:
        return len(self._keys)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        return self._members.tenant._base_user(self._keys[index])


__all__ = ["OnDemandMicrosoftTenant"]
