"""A deterministic synthetic school district: schools, people, and who connected which app.

The same seed and size always give the same people and grants; only timestamps are
relative to `now`, so the demo always looks current. Nothing here knows about Google
or Microsoft APIs: scanner.demo.tenants turns a District into emulator tenants.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass

from scanner.demo.apps import DEMO_APPS, DemoApp  # for one commit: the next makes the apps a parameter

DISTRICT_NAME = "Springfield Public Schools"
DOMAIN = "springfield-schools.example"
STUDENT_DOMAIN = "students.springfield-schools.example"

# (school, level, grades)
SCHOOLS = (
    ("Lincoln Elementary", "elementary", range(0, 6)),
    ("Washington Elementary", "elementary", range(0, 6)),
    ("Roosevelt Elementary", "elementary", range(0, 6)),
    ("Jefferson Middle", "middle", range(6, 9)),
    ("Springfield High", "high", range(9, 13)),
)
STAFF_PER_STUDENTS = 12  # about one staff account for every 12 students

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
    key: int
    given: str
    family: str
    email: str
    role: str  # "student" | "staff"
    school: str
    level: str
    grade: int | None

    @property
    def name(self) -> str:
        return f"{self.given} {self.family}"

    @property
    def google_org_unit(self) -> str:
        if self.role == "student":
            label = "K" if self.grade == 0 else str(self.grade)
            return f"/Students/{self.school}/Grade {label}"
        return f"/Staff/{self.school}"


@dataclass(frozen=True)
class DemoGrant:
    person: int  # Person.key
    app: str  # DemoApp.name
    provider: str  # "google" | "microsoft"
    scopes: tuple[str, ...]
    authorized_at: dt.datetime
    last_used_at: dt.datetime | None


@dataclass
class District:
    name: str
    domain: str
    student_domain: str
    people: list[Person]
    apps: tuple[DemoApp, ...]
    grants: list[DemoGrant]
    now: dt.datetime

    def app(self, name: str) -> DemoApp:
        return next(app for app in self.apps if app.name == name)


def build_district(users: int = 3000, *, seed: int = 2026, now: dt.datetime | None = None) -> District:
    """A district of about `users` accounts (at least one per school)."""
    if users < len(SCHOOLS) * 2:
        raise ValueError(f"the demo district needs at least {len(SCHOOLS) * 2} users, got {users}")
    now = (now or dt.datetime.now(dt.timezone.utc)).replace(microsecond=0)
    rng = random.Random(seed)
    people = _people(users, rng)
    grants = [grant for person in people for grant in _grants_of(person, rng, now)]
    # The first staff account is the IT technician, who used Microsoft's own admin tools.
    it_technician = people[0]
    held = {(g.app, g.provider) for g in grants if g.person == it_technician.key}
    grants += [
        DemoGrant(it_technician.key, app.name, "microsoft", app.microsoft_scopes, now - dt.timedelta(days=90), now - dt.timedelta(days=2))
        for app in DEMO_APPS if app.ownership == "first_party" and (app.name, "microsoft") not in held
    ]
    return District(DISTRICT_NAME, DOMAIN, STUDENT_DOMAIN, people, DEMO_APPS, grants, now)


def _people(users: int, rng: random.Random) -> list[Person]:
    staff_total = max(len(SCHOOLS), users // (STAFF_PER_STUDENTS + 1))
    people: list[Person] = []
    emails: set[str] = set()

    def unique(local: str, domain: str) -> str:
        email, n = f"{local}@{domain}", 1
        while email in emails:
            n += 1
            email = f"{local}{n}@{domain}"
        emails.add(email)
        return email

    for i in range(users):
        role = "staff" if i < staff_total else "student"
        index = i if role == "staff" else i - staff_total
        school, level, grades = SCHOOLS[index % len(SCHOOLS)]
        given, family = rng.choice(GIVEN_NAMES), rng.choice(FAMILY_NAMES)
        ascii_family = _ascii(family)
        if role == "staff":
            email = unique(f"{_ascii(given)}.{ascii_family}".lower(), DOMAIN)
            grade = None
        else:
            grade = rng.choice(list(grades))
            graduation_year = 2026 + (12 - grade) + 1
            email = unique(f"{_ascii(given)[0]}{ascii_family}{graduation_year % 100:02d}".lower(), STUDENT_DOMAIN)
        people.append(Person(len(people), given, family, email, role, school, level, grade))
    return people


def _grants_of(person: Person, rng: random.Random, now: dt.datetime) -> list[DemoGrant]:
    grants = []
    for app in DEMO_APPS:
        if person.level not in app.levels:
            continue
        rate = app.student_rate if person.role == "student" else app.staff_rate
        for provider, scopes, creep in (("google", app.google_scopes, app.creep_google), ("microsoft", app.microsoft_scopes, app.creep_microsoft)):
            # The district is Google-first for classes; Microsoft apps are mostly staff.
            share = rate if provider == "google" else rate * (0.3 if person.role == "student" else 0.6)
            if not scopes or rng.random() >= share:
                continue
            granted = list(scopes)
            if creep and rng.random() < app.creep_rate:
                granted += creep
            authorized = now - dt.timedelta(days=rng.randint(1, 700), seconds=rng.randint(0, 86399))
            used = None
            if rng.random() < 0.7:  # most connected apps were used in the last two months
                used = now - dt.timedelta(days=rng.randint(0, 60), seconds=rng.randint(0, 86399))
                used = max(used, authorized)
            grants.append(DemoGrant(person.key, app.name, provider, tuple(granted), authorized, used))
    return grants


_ASCII = str.maketrans("áàâäãåçéèêëíìîïñóòôöõøúùûüýÿßæœ'ễ", "aaaaaaceeeeiiiinoooooouuuuyysao_e")


def _ascii(text: str) -> str:
    return "".join(c for c in text.lower().translate(_ASCII) if c.isalnum())
