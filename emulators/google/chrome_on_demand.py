"""The Chrome Management emulator's fleet for a district of any size, made when asked for.

`district_fleet()` over a `GoogleTenant` holds a ChromeProfile for every extension in every
browser: at a million accounts, about three million profiles, 800 MB. `OnDemandFleet` serves
the same district (an OnDemandGoogleTenant's) with the same answers while holding only:

- the extensions (DISTRICT_EXTENSIONS) and the extension requests (a handful);
- once counts or profiles are first asked for, one walk over the district in address order
  gives each extension's counts (profiles, people, browser devices: one bit a device while
  it walks) and, every BLOCK addresses, how many profiles came before: a page of profiles
  starts from the nearest such mark, so any page costs at most BLOCK people plus the page;
- what changed since: profiles added by `install()` and addresses `uninstall()` took an
  extension from, per extension (an extension changed so is listed by walking the district).

Profiles in one org unit (`orgUnitId`) are counted by one walk, cached; each page then resumes
the walk where the page before it ended (the place is kept for the next page's token).

Which extensions a person has comes from install_draws() (a digest of the seed and their
address), exactly as district_fleet() draws them for a GoogleTenant, so for the same
district both fleets serve the same pages: the tests compare them.

findInstalledAppDevices walks the district each time (the scanner never calls it): the
devices, sorted as their ids are, are bits of a 221 KB map held for the last call's extension.
"""

from __future__ import annotations

import bisect
import heapq
import threading
from array import array
from collections.abc import Iterator, Mapping
from dataclasses import replace
from typing import Any

from .chrome import (
    DISTRICT_EXTENSIONS, REQUESTED_EXTENSIONS, ChromeExtension, ChromeProfile, _digest, _profile_order, install_draws,
    install_shares, new_profile, requesting_staff,
)
from .on_demand import OnDemandGoogleTenant

BLOCK = 1024  # addresses between two marks of how many profiles came before
_DEVICES = 10**6  # new_profile's device numbers: device-0 .. device-999999
_DIGITS = 6
_LEX_KEYS = 11**_DIGITS  # a device number as a key that sorts as its id does (digits + 1 in base 11, 0 after the end)
_UNSET = object()


class OnDemandFleet:
    """The extensions of an OnDemandGoogleTenant's managed browsers (see the module's docstring).

    The same calls as ChromeFleet: `extensions`, `requests`, `request_names` and `lock` as
    attributes, `installed_counts`, `profiles` (an iterator here), `profile_page`,
    `device_page`, and the changes `add_extension`, `install`, `uninstall`, `request`.
    `installs` maps an extension to a list of its profiles, made when read.
    """

    def __init__(self, tenant: OnDemandGoogleTenant, *, seed: int = 1, student_domain: str | None = None):
        if not isinstance(tenant, OnDemandGoogleTenant):
            raise TypeError("an OnDemandFleet serves an OnDemandGoogleTenant's district; use ChromeFleet otherwise")
        added = [user.primary_email for user in tenant._current_extra.values() if not user.is_admin]
        if added:
            raise ValueError(f"users added to the tenant since it was built ({', '.join(added[:3])}) have no place in an "
                             "on-demand fleet: build the fleet first, then install() their extensions")
        self.lock = threading.RLock()
        self.extensions: dict[str, ChromeExtension] = {}
        self.requests: dict[str, list[dict[str, str]]] = {}
        self.request_names: dict[str, str] = {}
        self.installs = _Installs(self)
        self._tenant, self._district, self._seed = tenant, tenant.district, seed
        self._student_suffix = "@" + student_domain if student_domain else None
        # The tenant's users changed before the fleet was built (deleted: None), by the district's key.
        self._overrides: dict[int, Any] = {tenant._key_of_id(user_id): None for user_id in tenant._deleted}
        self._overrides.update((tenant._key_of_id(user_id), replace(user)) for user_id, user in tenant._held_users.items())
        self._drawn = {extension.app_id: index for index, (extension, _, _) in enumerate(DISTRICT_EXTENSIONS)}
        self._shares = install_shares()
        self._added: dict[str, list[ChromeProfile]] = {}  # install() since, by extension
        self._removed: dict[str, set[str]] = {}  # uninstall() since: lowercase addresses, by extension
        self._counts: dict[str, tuple[int, int, int]] = {}  # installed_counts(), made once (until a change)
        self._totals: dict[tuple[str, str], int] = {}  # profiles directly in an org unit, by (extension, org unit id)
        self._resume: dict[tuple[str, str, int], tuple[int, int]] = {}  # (extension, org unit id, offset) -> (place, offset)
        self._marks: list[array] | None = None  # per drawn extension: its profiles before each BLOCK of addresses
        self._drawn_counts: list[tuple[int, int, int]] = []
        self._devices: tuple[tuple[str, str, int], tuple[bytearray, list[tuple[str, str]], int]] | None = None
        self._version = 0  # changes since: the device map is for one version
        for extension, _, _ in DISTRICT_EXTENSIONS:
            self.extensions[extension.app_id] = extension
        staff = requesting_staff(self._first_users(len(REQUESTED_EXTENSIONS) + 1))
        for index, (app_id, name, why) in enumerate(REQUESTED_EXTENSIONS):
            for user in staff[index:index + 2]:
                self.request(app_id, name, user.primary_email, why)

    # -- the district's people, as district_fleet() sees them -----------------------------------

    def _first_users(self, staff_wanted: int) -> list:
        """Users in id order up to the `staff_wanted`-th staff member (district_fleet's requesters)."""
        tenant, users, staff = self._tenant, [], 0
        merged = heapq.merge(((tenant._user_id(key), key) for key in tenant._id_order),
                             sorted(((user.id, user) for user in tenant._current_extra.values()), key=lambda item: item[0]))
        for _, who in merged:
            if isinstance(who, int):
                who = self._overrides.get(who, _UNSET) if who in self._overrides else tenant._user(who)
                if who is None:
                    continue  # deleted
            users.append(who)
            if not who.is_admin and not who.org_unit_path.startswith("/Students"):
                staff += 1
                if staff >= staff_wanted:
                    break
        return users

    def _person(self, key: int) -> tuple[str, int] | None:
        """(address, a bit for each drawn extension they have) of the district's person `key`, None if
        their browsers report nothing (suspended, deleted)."""
        district = self._district
        user = self._overrides.get(key, _UNSET) if self._overrides else _UNSET
        if user is _UNSET:
            if district.suspended[key]:
                return None
            email = district.email(key)
            student = (email.lower().endswith(self._student_suffix) if self._student_suffix
                       else key >= district.staff_total)  # the district's students are in /Students
        else:
            if user is None or user.suspended or user.is_admin:
                return None
            email = user.primary_email
            student = (email.lower().endswith(self._student_suffix) if self._student_suffix
                       else user.org_unit_path.startswith("/Students"))
        mask = 0
        for index, (draw, share) in enumerate(zip(install_draws(self._seed, email, len(self._shares)), self._shares)):
            if draw < share[student]:
                mask |= 1 << index
        return email, mask

    def _org_unit_id(self, key: int) -> str:
        user = self._overrides.get(key) if self._overrides else None
        return self._tenant.org_unit_id(user.org_unit_path if user is not None else self._tenant._org_unit(key))

    def _drawn_profiles(self, app_id: str, position: int = 0) -> Iterator[tuple[int, ChromeProfile]]:
        """(place in address order, profile) of each person the extension was drawn for, from `position` on."""
        index = self._drawn.get(app_id)
        if index is None:
            return
        order = self._tenant._email_order
        for place in range(position, len(order)):
            key = order[place]
            found = self._person(key)
            if found is not None and found[1] >> index & 1:
                yield place, new_profile(app_id, found[0], self._org_unit_id(key))

    def _survey(self) -> list[array]:
        """One walk over the district: each drawn extension's counts, and the marks pages start from."""
        if self._marks is not None:
            return self._marks
        count = len(self._shares)
        profiles = [0] * count
        marks = [array("I") for _ in range(count)]
        devices = [bytearray(_DEVICES // 8 + 1) for _ in range(count)]
        for place, key in enumerate(self._tenant._email_order):
            if place % BLOCK == 0:
                for index in range(count):
                    marks[index].append(profiles[index])
            found = self._person(key)
            if found is None or not found[1]:
                continue
            email, mask = found
            device = _digest(email.lower()) % _DEVICES  # new_profile's device
            for index in range(count):
                if mask >> index & 1:
                    profiles[index] += 1
                    devices[index][device >> 3] |= 1 << (device & 7)
        # Each person has one profile an extension, under their own address: as many people as profiles.
        self._drawn_counts = [(profiles[index], profiles[index], int.from_bytes(devices[index], "big").bit_count())
                              for index in range(count)]
        self._marks = marks
        return marks

    def _unchanged(self, app_id: str) -> bool:
        return app_id in self._drawn and not self._added.get(app_id) and not self._removed.get(app_id)

    # -- what the handlers read ----------------------------------------------------------------

    def installed_counts(self, app_id: str) -> tuple[int, int, int]:
        """(profiles, people, browser devices) with the extension."""
        with self.lock:
            counts = self._counts.get(app_id)
            if counts is None:
                if self._unchanged(app_id):
                    self._survey()
                    counts = self._drawn_counts[self._drawn[app_id]]
                else:
                    profiles, people, devices = 0, set(), set()
                    for profile in self.profiles(app_id):
                        profiles += 1
                        people.add(profile.email)
                        devices.add(profile.device_id)
                    counts = (profiles, len(people), len(devices))
                self._counts[app_id] = counts
            return counts

    def profiles(self, app_id: str, org_unit_id: str = "") -> Iterator[ChromeProfile]:
        """The profiles with the extension (directly in `org_unit_id` if given), by address, each made as it is reached."""
        removed = self._removed.get(app_id, set())
        drawn = (profile for _, profile in self._drawn_profiles(app_id)
                 if profile.email.lower() not in removed and (not org_unit_id or profile.org_unit_id == org_unit_id))
        added = sorted((p for p in self._added.get(app_id, []) if not org_unit_id or p.org_unit_id == org_unit_id),
                       key=_profile_order)
        return heapq.merge(drawn, added, key=_profile_order)

    def profile_page(self, app_id: str, org_unit_id: str, start: int, size: int) -> tuple[int, list[ChromeProfile]]:
        """(how many profiles, the `size` from `start` on), in the order of `profiles()`."""
        with self.lock:
            if not org_unit_id and self._unchanged(app_id):
                marks = self._survey()[self._drawn[app_id]]
                if not marks:
                    return 0, []  # a district of no one
                block = bisect.bisect_right(marks, start) - 1  # the last mark at or before `start`
                before, page = marks[block], []
                for _, profile in self._drawn_profiles(app_id, block * BLOCK):
                    if len(page) >= size:
                        break
                    if before >= start:
                        page.append(profile)
                    before += 1
                return self.installed_counts(app_id)[0], page
            total = self._totals.get((app_id, org_unit_id))
            if self._unchanged(app_id):  # in one org unit: from where the last page ended, if one did
                place, seen = self._resume.get((app_id, org_unit_id, start), (0, 0))
                found: Iterator[tuple[int, ChromeProfile]] = (
                    (place, profile) for place, profile in self._drawn_profiles(app_id, place) if profile.org_unit_id == org_unit_id)
            else:
                seen, found = 0, ((0, profile) for profile in self.profiles(app_id, org_unit_id))
            page = []
            for place, profile in found:
                if seen == start + size and self._unchanged(app_id):
                    if len(self._resume) >= 4096:
                        self._resume.clear()
                    self._resume[app_id, org_unit_id, seen] = (place, seen)
                if seen >= start + size and total is not None:
                    break
                if seen >= start and len(page) < size:
                    page.append(profile)
                seen += 1
            if total is None:
                total = self._totals[app_id, org_unit_id] = seen  # the walk went to the end
            return total, page

    def device_page(self, app_id: str, org_unit_id: str, start: int, size: int) -> tuple[int, list[tuple[str, str]]]:
        """(how many devices, the `size` (device id, machine) from `start` on), by device id."""
        with self.lock:
            wanted = (app_id, org_unit_id, self._version)
            if self._devices is None or self._devices[0] != wanted:
                self._devices = None  # the last call's map goes before the next is made
                keys, others = bytearray(_LEX_KEYS // 8 + 1), {}
                for profile in self.profiles(app_id, org_unit_id):
                    number = _device_number(profile)
                    if number is None:
                        others.setdefault(profile.device_id, profile.machine)
                    else:
                        key = _lex_key(number)
                        keys[key >> 3] |= 1 << (key & 7)
                others_sorted = sorted(others.items())
                drawn = {f"device-{n}" for n in _numbers_of(keys)} & set(others) if others else set()
                total = int.from_bytes(keys, "big").bit_count() + len(others) - len(drawn)
                self._devices = (wanted, (keys, others_sorted, total))
            keys, others_sorted, total = self._devices[1]
            merged = heapq.merge(((f"device-{n}", f"CB-{n % 10**5:05d}") for n in _numbers_of(keys)), others_sorted)
            page, seen, last = [], 0, None
            for device in merged:
                if device[0] == last:
                    continue  # one entry a device id
                last = device[0]
                if seen >= start:
                    if len(page) >= size:
                        break
                    page.append(device)
                seen += 1
            return total, page

    # -- changes --------------------------------------------------------------------------------

    def _changed(self, app_id: str) -> None:
        self._counts.pop(app_id, None)
        for key in [key for key in self._totals if key[0] == app_id]:
            del self._totals[key]
        for key in [key for key in self._resume if key[0] == app_id]:
            del self._resume[key]
        self._version += 1

    def add_extension(self, extension: ChromeExtension) -> ChromeExtension:
        with self.lock:
            self.extensions[extension.app_id] = extension
            self._changed(extension.app_id)
            return extension

    def install(self, app_id: str, email: str, *, org_unit_id: str = "", device: str = "") -> ChromeProfile:
        """The extension shows up in one more profile."""
        with self.lock:
            profile = new_profile(app_id, email, org_unit_id, device)
            self._added.setdefault(app_id, []).append(profile)
            self._changed(app_id)
            return profile

    def uninstall(self, app_id: str, email: str) -> None:
        with self.lock:
            address = email.lower()
            self._added[app_id] = [p for p in self._added.get(app_id, []) if p.email.lower() != address]
            if app_id in self._drawn:
                self._removed.setdefault(app_id, set()).add(address)
            self._changed(app_id)

    def request(self, app_id: str, display_name: str, email: str, justification: str = "",
                at: str = "2026-11-20T15:04:05.123Z") -> None:
        """Someone asked for an extension (Chrome's CloudExtensionRequestEnabled policy)."""
        with self.lock:
            self.request_names[app_id] = display_name
            self.requests.setdefault(app_id, []).append({"email": email, "justification": justification, "at": at})


class _Installs(Mapping):
    """ChromeFleet.installs, read-only: an extension's profiles, made when read (all of them: at a
    million accounts, use `profiles()` or the pages instead)."""

    def __init__(self, fleet: OnDemandFleet):
        self._fleet = fleet

    def __getitem__(self, app_id: str) -> list[ChromeProfile]:
        fleet = self._fleet
        if app_id not in fleet.extensions and app_id not in fleet._added:
            raise KeyError(app_id)
        with fleet.lock:
            return list(fleet.profiles(app_id))

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys([*self._fleet.extensions, *self._fleet._added]))

    def __len__(self) -> int:
        return len(set(self._fleet.extensions) | set(self._fleet._added))


def _device_number(profile: ChromeProfile) -> int | None:
    """The number of a profile's device as new_profile() names it, None for a device named otherwise."""
    digits = profile.device_id.removeprefix("device-")
    if digits == profile.device_id or not digits.isdigit() or str(int(digits)) != digits or int(digits) >= _DEVICES:
        return None
    number = int(digits)
    return number if profile.machine == f"CB-{number % 10**5:05d}" else None


def _lex_key(number: int) -> int:
    """A key that orders device numbers as their ids sort as text ("device-10" before "device-9")."""
    digits = str(number)
    key = 0
    for digit in digits:
        key = key * 11 + ord(digit) - 47
    return key * 11 ** (_DIGITS - len(digits))


def _numbers_of(keys: bytearray) -> Iterator[int]:
    """The device numbers whose _lex_key bits are set, in the order their ids sort."""
    for place, byte in enumerate(keys):
        if not byte:
            continue
        for bit in range(8):
            if byte >> bit & 1:
                key, digits = place * 8 + bit, ""
                for power in range(_DIGITS - 1, -1, -1):
                    digit = key // 11**power % 11
                    if not digit:
                        break
                    digits += chr(digit + 47)
                yield int(digits)


__all__ = ["BLOCK", "OnDemandFleet"]
