"""A synthetic district of any size that holds a few bytes a person, not the people: each
person and their grants are made again when asked for (emulators.district's generator).

`build_district()` draws people and then grants from one random stream, so a district of a
million accounts holds a million Person records and eight million grants. `OnDemandDistrict`
draws the same people from the same stream once, keeping only what the stream decided (name,
grade, title, suspension: a few bytes in arrays) and the number each address got; a
person's grants come from a stream of their own, seeded by (seed, person), so any person's
grants can be made again at any time, in any order. The people are exactly
build_district's; the grants follow the same rates and the same long tail, drawn apart.

Addresses stay unique without a set of every address: a district's addresses are
name-based locals numbered in order (olivia.smith@, olivia.smith2@, ...), and the forms
cannot collide with one another (staff locals hold a dot and no digit, short staff
addresses neither, students' end in two digits of their graduation year, each numbered
from 2 on), so counting each local is the same as build_district's `taken` set. A
district whose students and staff share one domain could collide that way, so it is refused.

`materialize()` gives the same district as a District (people and grants held), to compare
with: the tests check an on-demand tenant answers as one built from it does.
"""

from __future__ import annotations

import datetime as dt
import random
from array import array
from collections import Counter
from collections.abc import Iterator, Sequence

from .apps import DISTRICT_APPS, App, small_apps
from .district import (
    APPETITE_SIGMA, DISTRICT_NAME, DOMAIN, FAMILY_NAMES, GIVEN_NAMES, PROVIDERS, SCHOOL_YEAR, SCHOOLS, STAFF_PER_STUDENTS,
    MAX_GRANTS_PER_USER, STAFF_TITLES, UTC, District, Grant, Person, _addresses, _consent_requests, _scale, _short_local,
    ascii_local,
)

_GIVEN_LOCAL = tuple(ascii_local(name) for name in GIVEN_NAMES)
_FAMILY_LOCAL = tuple(ascii_local(name) for name in FAMILY_NAMES)


class OnDemandDistrict:
    """A district of `users` accounts whose people and grants are made when asked for.

    The arguments are build_district's (a subset); `person(key)` and `grants_of(key)` give one
    person and their grants, the same every time.
    """

    def __init__(self, users: int = 3000, *, seed: int = 2026, apps: Sequence[App] | None = None, extra_apps: int = 0,
                 grants_per_user: float | None = None, providers: Sequence[str] = PROVIDERS, history_days: float = 400,
                 suspended_share: float = 0.01, name: str = DISTRICT_NAME, domain: str = DOMAIN,
                 student_domain: str | None = None, now: dt.datetime | None = None):
        unknown = set(providers) - set(PROVIDERS)
        if unknown:
            raise ValueError(f"unknown providers {sorted(unknown)}; use {' and '.join(PROVIDERS)}")
        self.name, self.domain, self.seed, self.size = name, domain, seed, users
        self.student_domain = student_domain or f"students.{domain}"
        if self.student_domain.lower() == domain.lower():
            raise ValueError("an on-demand district needs a student domain of its own (its addresses could collide)")
        self.now = (now or dt.datetime.now(UTC)).replace(microsecond=0)
        self.apps = tuple(DISTRICT_APPS if apps is None else apps) + small_apps(extra_apps)
        self.providers = tuple(providers)
        self.history_days = history_days
        self.grants_per_user = grants_per_user
        self.staff_total = max(len(SCHOOLS), users // (STAFF_PER_STUDENTS + 1))
        self._draw_people(random.Random(seed), suspended_share)
        shares = {"google": (1.0, 1.0), "microsoft": (1.0, 1.0)}
        scales = {provider: 1.0 for provider in self.providers}
        if grants_per_user:
            scales = {provider: _scale(self.apps, provider, shares[provider], self.groups, grants_per_user)
                      for provider in self.providers}
        # As build_district's plan: (provider, app, scopes, creep, student rate, staff rate, levels).
        # build_district's plan, one for each (role, level): (provider, app, scopes, creep, rate), in
        # the order draws are made, leaving out what the role and level never draw for.
        self.plans = {(role, level): [
            (provider, app, app.scopes(provider), app.creep(provider),
             (app.student_rate if role == "student" else app.staff_rate) * scales[provider])
            for app in self.apps for provider in self.providers if app.scopes(provider) and level in app.levels]
            for role, level in self.groups}

    def _draw_people(self, rng: random.Random, suspended_share: float) -> None:
        """build_district's draws for its people, in its order, keeping what they decided."""
        users = self.size
        self.given, self.family = array("B", bytes(users)), array("B", bytes(users))
        self.grade_or_title = array("b", bytes(users))  # a student's grade, a staff member's title
        self.suspended = bytearray(users)
        self.number = array("I", bytes(4 * users))  # the address's number (1: none)
        self.short_number = array("I", bytes(4 * users))  # the short staff address's number (0: none)
        counts: Counter = Counter()
        for key in range(users):
            staff = key < self.staff_total
            index = key if staff else key - self.staff_total
            grades = SCHOOLS[index % len(SCHOOLS)][2]
            given, family = rng.choice(range(len(GIVEN_NAMES))), rng.choice(range(len(FAMILY_NAMES)))
            self.given[key], self.family[key] = given, family
            if staff:
                self.grade_or_title[key] = rng.choice(range(len(STAFF_TITLES)))
            else:
                self.grade_or_title[key] = rng.choice(grades)
            local, domain = self._local(key)
            counts[local, domain] += 1
            self.number[key] = counts[local, domain]
            self.suspended[key] = (rng.random() < suspended_share) if suspended_share else False
        for key in range(min(users, self.staff_total)):  # short addresses come after every primary one, in order
            person = self._person(key)
            if key != 0 and person.title != "IT Technician" and key % 4 != 1:
                counts[_short_local(person), self.domain] += 1
                self.short_number[key] = counts[_short_local(person), self.domain]
        self.groups = Counter()
        for key in range(min(users, self.staff_total)):
            self.groups["staff", SCHOOLS[key % len(SCHOOLS)][1]] += 1
        for index in range(users - min(users, self.staff_total)):
            self.groups["student", SCHOOLS[index % len(SCHOOLS)][1]] += 1

    def _local(self, key: int) -> tuple[str, str]:
        """The person's address before its number: (local part, domain)."""
        given, family = _GIVEN_LOCAL[self.given[key]], _FAMILY_LOCAL[self.family[key]]
        if key < self.staff_total:
            return f"{given}.{family}", self.domain
        graduation_year = SCHOOL_YEAR + (12 - self.grade_or_title[key]) + 1
        return f"{given[0]}{family}{graduation_year % 100:02d}", self.student_domain

    def email(self, key: int) -> str:
        """The person's address (Person.email), without making the person."""
        local, domain = self._local(key)
        number = self.number[key]
        return f"{local}{number if number > 1 else ''}@{domain}"

    def _person(self, key: int) -> Person:
        staff = key < self.staff_total
        index = key if staff else key - self.staff_total
        school, level, _ = SCHOOLS[index % len(SCHOOLS)]
        grade = None if staff else self.grade_or_title[key]
        title = STAFF_TITLES[self.grade_or_title[key]] if staff else "Student"
        return Person(key, GIVEN_NAMES[self.given[key]], FAMILY_NAMES[self.family[key]], self.email(key),
                      "staff" if staff else "student", school, level, grade, title, bool(self.suspended[key]))

    def person(self, key: int) -> Person:
        """Person `key` (0 <= key < size), as build_district makes them."""
        if not 0 <= key < self.size:
            raise IndexError(key)
        person = self._person(key)

        def short() -> str:
            number = self.short_number[key]
            return f"{_short_local(person)}{number if number > 1 else ''}@{self.domain}"

        return _addresses(person, short)

    def people(self) -> Iterator[Person]:
        for key in range(self.size):
            yield self.person(key)

    def grants_of(self, key: int, person: Person | None = None) -> list[Grant]:
        """Person `key`'s grants through every provider of the district, drawn from their own stream."""
        person = person or self.person(key)
        rng = random.Random(f"{self.seed}:grants:{key}")
        draw = rng.random
        appetite = rng.lognormvariate(-APPETITE_SIGMA ** 2 / 2, APPETITE_SIGMA) if self.grants_per_user else 1.0
        held = dict.fromkeys(self.providers, 0)
        grants: list[Grant] = []
        for provider, app, scopes, creep, rate in self.plans[person.role, person.level]:
            # As emulators.district._grants_of, over a plan made for the person's role and level.
            if held[provider] >= MAX_GRANTS_PER_USER or draw() >= rate * appetite:
                continue
            held[provider] += 1
            if creep and draw() < app.creep_rate:
                scopes = scopes + creep
            authorized = self.now - dt.timedelta(days=rng.uniform(1, self.history_days))
            used = max(authorized, self.now - dt.timedelta(days=rng.uniform(0, 60))) if draw() < 0.7 else None
            grants.append(Grant(key, app, provider, scopes, authorized, used))
        return grants

    def technician_grants(self, first_grants: Sequence[Grant]) -> list[Grant]:
        """As build_district: the first staff account (the IT technician) used Microsoft's own admin
        tools, the ones not among their grants (`first_grants`: person 0's, or any list holding them);
        build_district adds these after everyone's grants."""
        if not self.size or "microsoft" not in self.providers:
            return []
        held = {g.app for g in first_grants if g.person == 0 and g.provider == "microsoft"}
        return [Grant(0, app, "microsoft", app.microsoft_scopes, self.now - dt.timedelta(days=90), self.now - dt.timedelta(days=2))
                for app in self.apps if app.ownership == "first_party" and app.microsoft_scopes and app not in held]

    def materialize(self) -> District:
        """The same district with every person and grant held (for tests, and small districts)."""
        people = list(self.people())
        grants = [grant for person in people for grant in self.grants_of(person.key, person)]
        grants += self.technician_grants(grants if people else [])
        asks = _consent_requests(people, self.apps, self.seed, self.now) if "microsoft" in self.providers else []
        return District(self.name, self.domain, self.student_domain, people, self.apps, grants, self.now, self.seed, asks)


__all__ = ["OnDemandDistrict"]
