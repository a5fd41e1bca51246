"""A synthetic school district, the same for the same arguments: schools, people, and who
connected which app through Google or Microsoft, and when.

The one generator for the demo, the tests and the benchmark. `build_district()` draws the
people and their grants from a list of apps (emulators.apps: the emulators' own by default,
the demo brings its own); `google_tenant()` (emulators.google.tenant) and
`microsoft_tenant()` (emulators.microsoft.tenant) turn a District into what each emulator
serves, adding what only that directory has (a super admin, licences, guests, service
principals). Only timestamps follow `now`, so a district always looks current.

People: about one staff account for every 12 students, over five schools (elementary,
middle, high); Unicode names; students' addresses carry their graduation year; a share of
accounts is suspended. Grants: each account connects each app offered at its school's level
with the app's rate for its role, times the provider's share (`microsoft_share`, by role:
the demo's district is Google-first). With `grants_per_user`, the rates are scaled so an
account holds that many grants on average on each provider, and how eager each person is
varies (log-normal, mean 1): a long tail of heavy users, up to MAX_GRANTS_PER_USER apps per
provider. Each grant was made within `history_days`; 70% were used in the last 60 days.
Requests for admin consent (Microsoft's workflow) come from each app's `request_rates`, made
in the last REQUEST_DAYS days, drawn apart from the grants (the same grants with or without them).
"""

from __future__ import annotations

import datetime as dt
import math
import random
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from statistics import NormalDist
from typing import NamedTuple

from .apps import DISTRICT_APPS, App, small_apps

UTC = dt.timezone.utc
DISTRICT_NAME = "Springfield Public Schools"
DOMAIN = "springfield-schools.example"
PROVIDERS = ("google", "microsoft")

# (school, level, grades; 0 is kindergarten)
SCHOOLS = (
    ("Lincoln Elementary", "elementary", range(0, 6)),
    ("Washington Elementary", "elementary", range(0, 6)),
    ("Roosevelt Elementary", "elementary", range(0, 6)),
    ("Jefferson Middle", "middle", range(6, 9)),
    ("Springfield High", "high", range(9, 13)),
)
STAFF_PER_STUDENTS = 12  # about one staff account for every 12 students
SCHOOL_YEAR = 2026  # students' addresses carry the year they graduate
STAFF_TITLES = ("Teacher", "Teacher", "Teacher", "Teacher", "Aide", "Counselor", "Principal", "Librarian", "IT Technician")
APPETITE_SIGMA = 0.75
MAX_GRANTS_PER_USER = 40
REQUEST_DAYS = 45  # requests for admin consent were made in this many days before `now`
REQUEST_REASONS = (
    "I need this for my class", "Our department uses it for grading", "My students need it for a project",
    "Required by the vendor's training", "For the after-school program", "",
)

GIVEN_NAMES = (
    "Olivia", "Liam", "Emma", "Noah", "Ava", "Mateo", "Sofía", "Elijah", "Isabella", "Lucas", "Mia", "Amir",
    "Zoë", "José", "Chloé", "Nguyễn", "Aaliyah", "Kenji", "Fatima", "Dmitri", "Siobhán", "Chidi", "Priya",
    "Mohammed", "Hannah", "Diego", "Aiyana", "Lars", "Mei", "Oluwaseun", "Grace", "Ethan", "Valentina",
    "Jamal", "Ingrid", "Rafael", "Leilani", "Tomás", "Ayesha", "Benjamin", "Camila", "Yusuf", "Nora",
)
FAMILY_NAMES = (
    "Smith", "Johnson", "García", "Nguyen", "Williams", "Brown", "Martínez", "Okafor", "Patel", "Kim",
    "Rodríguez", "Müller", "O'Brien", "Haddad", "Kowalski", "Yamamoto", "Begay", "Dubois", "Rossi",
    "Ivanova", "Hernández", "Chen", "Johansson", "Adeyemi", "Lopez", "Schmidt", "Singh", "Thompson",
    "Wilson", "Nakamura", "Ferreira", "Abdullah", "Novak", "Murphy", "Costa", "Park", "Reyes",
)


@dataclass(frozen=True)
class Person:
    """One account holder; `key` is their place in District.people."""

    key: int
    given: str
    family: str
    email: str
    role: str  # "student" | "staff"
    school: str
    level: str
    grade: int | None
    title: str  # "Student", or the staff member's job title
    suspended: bool = False
    # How the directories spell the person (see _addresses): the Google account's aliases, and
    # the Microsoft account's own address and other addresses when they differ from `email`.
    google_aliases: tuple[str, ...] = ()
    microsoft_email: str = ""
    microsoft_aliases: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return f"{self.given} {self.family}"

    @property
    def microsoft_address(self) -> str:
        """The Microsoft account's primary address (mail and userPrincipalName)."""
        return self.microsoft_email or self.email

    @property
    def google_org_unit(self) -> str:
        if self.role == "student":
            label = "K" if self.grade == 0 else str(self.grade)
            return f"/Students/{self.school}/Grade {label}"
        return f"/Staff/{self.school}"


class ConsentAsk(NamedTuple):
    """One person's request that an administrator consent to an app for them (Microsoft)."""

    person: int  # Person.key
    app: App
    reason: str
    asked_at: dt.datetime


class Grant(NamedTuple):
    """One person's grant to one app through one provider (a tuple: a benchmark district holds a million)."""

    person: int  # Person.key
    app: App
    provider: str  # "google" | "microsoft"
    scopes: tuple[str, ...]
    authorized_at: dt.datetime
    last_used_at: dt.datetime | None


@dataclass
class District:
    """People, the apps they could use, and their grants through each provider."""

    name: str
    domain: str
    student_domain: str
    people: list[Person]
    apps: tuple[App, ...]
    grants: list[Grant]
    now: dt.datetime
    seed: int
    consent_requests: list[ConsentAsk] = field(default_factory=list)

    def app(self, name: str) -> App:
        """The (first) app of that name."""
        return next(app for app in self.apps if app.name == name)


def build_district(
    users: int = 3000,
    *,
    seed: int = 2026,
    apps: Sequence[App] | None = None,
    extra_apps: int = 0,
    grants_per_user: float | None = None,
    providers: Sequence[str] = PROVIDERS,
    microsoft_share: tuple[float, float] = (1.0, 1.0),
    history_days: float = 400,
    suspended_share: float = 0.01,
    name: str = DISTRICT_NAME,
    domain: str = DOMAIN,
    student_domain: str | None = None,
    now: dt.datetime | None = None,
) -> District:
    """A district of `users` accounts, the same for the same arguments (timestamps follow `now`).

    `apps`: the apps it uses (default: the emulators' own, emulators.apps.DISTRICT_APPS), with
    `extra_apps` small ones more; `providers`: which providers' grants to draw;
    `microsoft_share`: (students, staff) factors on every rate for Microsoft.
    """
    unknown = set(providers) - set(PROVIDERS)
    if unknown:
        raise ValueError(f"unknown providers {sorted(unknown)}; use {' and '.join(PROVIDERS)}")
    now = (now or dt.datetime.now(UTC)).replace(microsecond=0)
    apps = tuple(DISTRICT_APPS if apps is None else apps) + small_apps(extra_apps)
    student_domain = student_domain or f"students.{domain}"
    rng = random.Random(seed)
    people = _people(users, rng, domain, student_domain, suspended_share)
    shares = {"google": (1.0, 1.0), "microsoft": microsoft_share}
    scales = {provider: 1.0 for provider in providers}
    if grants_per_user:
        groups = Counter((person.role, person.level) for person in people)
        scales = {provider: _scale(apps, provider, shares[provider], groups, grants_per_user) for provider in providers}
    # (provider, app, scopes, creep, student rate, staff rate, levels), in the order draws are made.
    plan = [(provider, app, app.scopes(provider), app.creep(provider), app.student_rate * shares[provider][0] * scales[provider],
             app.staff_rate * shares[provider][1] * scales[provider], frozenset(app.levels))
            for app in apps for provider in providers if app.scopes(provider)]
    grants: list[Grant] = []
    for person in people:
        appetite = rng.lognormvariate(-APPETITE_SIGMA ** 2 / 2, APPETITE_SIGMA) if grants_per_user else 1.0
        grants += _grants_of(person, plan, appetite, history_days, rng, now)
    # The first staff account is the IT technician, who used Microsoft's own admin tools.
    if people and "microsoft" in providers:
        held = {g.app for g in grants if g.person == 0 and g.provider == "microsoft"}
        grants += [Grant(0, app, "microsoft", app.microsoft_scopes, now - dt.timedelta(days=90), now - dt.timedelta(days=2))
                   for app in apps if app.ownership == "first_party" and app.microsoft_scopes and app not in held]
    asks = _consent_requests(people, apps, seed, now) if "microsoft" in providers else []
    return District(name, domain, student_domain, people, apps, grants, now, seed, asks)


def _consent_requests(people: list[Person], apps: Sequence[App], seed: int, now: dt.datetime) -> list[ConsentAsk]:
    """Who asked an administrator to consent to which Microsoft app, and why (its own draws)."""
    rng = random.Random(f"consent requests:{seed}")
    asks = []
    for app in apps:
        if not app.microsoft_scopes or not any(app.request_rates):
            continue
        for person in people:
            rate = app.request_rates[person.role != "student"]
            if person.level in app.levels and rng.random() < rate:
                asked = now - dt.timedelta(days=rng.uniform(0, REQUEST_DAYS))
                asks.append(ConsentAsk(person.key, app, rng.choice(REQUEST_REASONS), asked))
    return asks


def _people(users: int, rng: random.Random, domain: str, student_domain: str, suspended_share: float) -> list[Person]:
    staff_total = max(len(SCHOOLS), users // (STAFF_PER_STUDENTS + 1))
    people: list[Person] = []
    emails: set[str] = set()
    for i in range(users):
        role = "staff" if i < staff_total else "student"
        index = i if role == "staff" else i - staff_total
        school, level, grades = SCHOOLS[index % len(SCHOOLS)]
        given, family = rng.choice(GIVEN_NAMES), rng.choice(FAMILY_NAMES)
        if role == "staff":
            email = unique_email(f"{ascii_local(given)}.{ascii_local(family)}", domain, emails)
            grade, title = None, rng.choice(STAFF_TITLES)
        else:
            grade, title = rng.choice(list(grades)), "Student"
            graduation_year = SCHOOL_YEAR + (12 - grade) + 1
            email = unique_email(f"{ascii_local(given)[0]}{ascii_local(family)}{graduation_year % 100:02d}", student_domain, emails)
        suspended = rng.random() < suspended_share if suspended_share else False
        people.append(Person(len(people), given, family, email, role, school, level, grade, title, suspended))
    return [_addresses(person, lambda person=person: unique_email(_short_local(person), person.email.partition("@")[2], emails))
            for person in people]


def _short_local(person: Person) -> str:
    """The local part of a staff member's short address (osmith@), before any number."""
    return ascii_local(person.given)[:1] + ascii_local(person.family)


def _addresses(person: Person, short_address: Callable[[], str]) -> Person:
    """How the two directories spell one person, as districts' do: mostly the same address,
    but a quarter of the staff's Microsoft address differs in case (Olivia.Smith@), a quarter
    have a short Microsoft address with their Google address as a proxy address (an alias on
    the Microsoft side), a quarter a short Google alias that is their Microsoft address (an
    alias on the Google side); a third of the students' Microsoft address differs in case.
    The IT staff (key 0, and whoever is titled IT Technician: the demo signs them in on both
    sides) are spelled the same everywhere. No randomness: the same people as before."""
    local, _, domain = person.email.partition("@")
    if person.key == 0 or person.title == "IT Technician":
        return person
    if person.role == "student":
        return replace(person, microsoft_email=local.capitalize() + "@" + domain) if person.key % 3 == 1 else person
    variant = person.key % 4
    if variant == 1:
        return replace(person, microsoft_email=".".join(part.capitalize() for part in local.split(".")) + "@" + domain)
    short = short_address()  # drawn for every staff member from here on (numbers follow the order)
    if variant == 2:
        return replace(person, microsoft_email=short, microsoft_aliases=(person.email,))
    if variant == 3:
        return replace(person, google_aliases=(short,), microsoft_email=short)
    return person


def _grants_of(person: Person, plan: list[tuple], appetite: float, history_days: float, rng: random.Random,
               now: dt.datetime) -> list[Grant]:
    student = person.role == "student"
    grants: list[Grant] = []
    held = dict.fromkeys(PROVIDERS, 0)
    for provider, app, scopes, creep, student_rate, staff_rate, levels in plan:
        if person.level not in levels or held[provider] >= MAX_GRANTS_PER_USER:
            continue
        if rng.random() >= min(1.0, (student_rate if student else staff_rate) * appetite):
            continue
        held[provider] += 1
        if creep and rng.random() < app.creep_rate:
            scopes = scopes + creep
        authorized = now - dt.timedelta(days=rng.uniform(1, history_days))
        used = None
        if rng.random() < 0.7:  # most connected apps were used in the last two months
            used = max(authorized, now - dt.timedelta(days=rng.uniform(0, 60)))
        grants.append(Grant(person.key, app, provider, scopes, authorized, used))
    return grants


def _scale(apps: Sequence[App], provider: str, share: tuple[float, float], groups: Counter, grants_per_user: float) -> float:
    """The factor on every rate that gives `grants_per_user` grants on the provider per account on
    average, given that a rate times a person's appetite is capped at 1 (bisection over an even
    grid of appetite quantiles)."""
    appetites = [math.exp(NormalDist(-APPETITE_SIGMA ** 2 / 2, APPETITE_SIGMA).inv_cdf((i + 0.5) / 50)) for i in range(50)]
    total = sum(groups.values())
    rates = [(count / total, [(app.student_rate if role == "student" else app.staff_rate) * share[role != "student"]
                              for app in apps if app.scopes(provider) and level in app.levels])
             for (role, level), count in groups.items()]
    if not any(rate for _, group in rates for rate in group):
        return 1.0

    def expected(scale: float) -> float:
        return sum(weight * min(1.0, rate * scale * a) for weight, group in rates for rate in group
                   for a in appetites) / len(appetites)

    low, high = 0.0, 1.0
    while expected(high) < grants_per_user and high < 1e6:
        high *= 2
    for _ in range(50):
        middle = (low + high) / 2
        low, high = (middle, high) if expected(middle) < grants_per_user else (low, middle)
    return high


# -- addresses ------------------------------------------------------------------------------

_ASCII = str.maketrans("áàâäãåçéèêëíìîïñóòôöõøúùûüýÿßæœłễ", "aaaaaaceeeeiiiinoooooouuuuyysaole")


def ascii_local(text: str) -> str:
    """A name as the local part of an address: lower case, accents dropped, letters and digits only."""
    return "".join(c for c in text.lower().translate(_ASCII) if c.isascii() and c.isalnum())


def unique_email(local: str, domain: str, taken: set[str]) -> str:
    """local@domain, or local2@domain, local3@... if taken; the address is added to `taken`."""
    email, n = f"{local}@{domain}", 1
    while email in taken:
        n += 1
        email = f"{local}{n}@{domain}"
    taken.add(email)
    return email


__all__ = ["ConsentAsk", "District", "Grant", "MAX_GRANTS_PER_USER", "Person", "SCHOOLS", "ascii_local", "build_district", "unique_email"]
