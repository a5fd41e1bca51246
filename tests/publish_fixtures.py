"""A district inventory for the Datasette tests: real scans of a fake tenant, a real catalog import.

Some apps have 10 or more student and staff accounts, others fewer, so the public
page has counts to show and counts to suppress. `build_inventory()` runs two scans
(the second finds a new app) and imports a catalog CSV through scanner.catalog.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from plugins.signin.passwords import hash_password
from scanner import store, timestamps
from scanner.catalog import read_catalog
from scanner.config import Config, config_sections
from scanner.providers import App, ConsentRequest, Grant, PostureFinding, User
from scanner.scan import run_scans
from tests.conftest import FakeTenant, free_port, registered_tenant

PROFILE = ["openid", "https://www.googleapis.com/auth/userinfo.email"]
DRIVE = "https://www.googleapis.com/auth/drive"
MAIL = "https://mail.google.com/"

KAHOOT = "111-kahoot.apps.googleusercontent.com"
QUIZLET = "222-quizlet.apps.googleusercontent.com"
MAILMERGE = "333-mailmerge.apps.googleusercontent.com"
CHATGPT = "444-chatgpt.apps.googleusercontent.com"
PADLET = "555-padlet.apps.googleusercontent.com"
PENDING = "666-mathquest.apps.googleusercontent.com"
HOMEWORK_AI = "777-homeworkai.apps.googleusercontent.com"

GIVEN = ("Ana", "Chidi", "Zoë", "Mateo", "Priya", "Kenji", "Fatima", "Lars", "Mei", "Diego", "Grace", "Yusuf", "Nora", "Tomás", "Ingrid")
FAMILY = ("Rivera", "Okafor", "Müller", "García", "Patel", "Yamamoto", "Haddad", "Johansson", "Chen", "Reyes", "Murphy", "Abdullah")

IT_USERNAME = "it_admin"
IT_PASSWORD = "correct horse battery staple"
IT_HASH_VARIABLE = "APP_INVENTORY_TEST_HASH_IT_ADMIN"
# Few iterations: the tests sign in often, and the cost is not what they test.
IT_PASSWORD_HASH = hash_password(IT_PASSWORD, iterations=1000)
DISTRICT_NAME = "Springfield Test District"


@dataclass
class Inventory:
    db_path: Path
    emails: list[str]
    names: list[str]
    staff_emails: list[str]


def _people() -> tuple[list[User], list[User]]:
    students, staff = [], []
    for n in range(30):
        given, family = GIVEN[n % len(GIVEN)], FAMILY[n % len(FAMILY)]
        school = "Central High" if n % 3 else "Lincoln Elementary"
        students.append(User(id=f"s{n}", email=f"{given.lower()}.{family.lower()}{n}@students.district.org",
                             name=f"{given} {family} {n}", role="student", org_unit=f"/Students/{school}"))
    for n in range(14):
        given, family = GIVEN[(n + 5) % len(GIVEN)], FAMILY[(n + 7) % len(FAMILY)]
        school = "Central High" if n % 2 else "Lincoln Elementary"
        staff.append(User(id=f"t{n}", email=f"{given.lower()}.{family.lower()}.staff{n}@district.org",
                          name=f"{given} {family} (staff {n})", role="staff", org_unit=f"/Staff/{school}"))
    return students, staff


def district_with_usage(tenant: FakeTenant) -> FakeTenant:
    """30 students and 14 staff; Kahoot is widely used, Quizlet by a few, Padlet by students it is not for."""
    students, staff = _people()
    tenant.users = students + staff
    tenant.apps = [
        App(id=KAHOOT, name="Kahoot!", publisher="Kahoot ASA"),
        App(id=QUIZLET, name="Quizlet", publisher="Quizlet Inc."),
        App(id=MAILMERGE, name="Super Mail Merge"),
        App(id=CHATGPT, name="ChatGPT", publisher="OpenAI"),
        App(id=PADLET, name="Padlet", publisher="Wallwisher"),
        App(id=PENDING, name="MathQuest"),
    ]
    grants = []
    grants += [Grant(user_id=u.id, app_id=KAHOOT, scopes=PROFILE) for u in students[:25]]
    # Three teachers gave Kahoot all of Drive, beyond what the review approved: scope creep.
    grants += [Grant(user_id=u.id, app_id=KAHOOT, scopes=[*PROFILE, DRIVE] if i < 3 else PROFILE) for i, u in enumerate(staff[:12])]
    grants += [Grant(user_id=u.id, app_id=QUIZLET, scopes=PROFILE) for u in students[:3] + staff[:2]]
    grants += [Grant(user_id=u.id, app_id=MAILMERGE, scopes=[*PROFILE, MAIL]) for u in staff[:4]]
    grants += [Grant(user_id=u.id, app_id=CHATGPT, scopes=PROFILE) for u in students[5:16]]
    grants += [Grant(user_id=u.id, app_id=PADLET, scopes=PROFILE) for u in staff[:10] + students[20:22]]
    grants += [Grant(user_id=staff[13].id, app_id=PENDING, scopes=PROFILE)]
    tenant.grants = grants
    tenant.posture = posture_findings(students, staff)
    return tenant


def posture_findings(students: list[User], staff: list[User]) -> list:
    """The consent settings: two checks fail, one is unknown; two students asked for ChatGPT (denied)."""
    def check(check_id, result, scope="/", reason=""):
        return PostureFinding(check_id=check_id, title=f"Check {check_id}", expected="restricted", actual=result, result=result,
                              fix="Admin console > API controls", scope_kind="org_unit", scope=scope, reason=reason)

    return [
        check("GWS.COMMONCONTROLS.10.4", "fail"), check("GWS.COMMONCONTROLS.10.4", "pass", "/Students"),
        check("GWS.COMMONCONTROLS.10.3", "fail"), check("GWS.COMMONCONTROLS.11.1", "pass"),
        check("GWS.CLASSROOM.2.1", "unknown", reason="the scope is not delegated"),
        *[ConsentRequest(id=f"req-{user.id}", app_id=CHATGPT, app_name="ChatGPT", scopes=PROFILE, status="InProgress",
                         user_id=user.id, email=user.email, user_name=user.name, reason="for class") for user in students[:2]],
    ]


def catalog_csv(today: dt.date) -> str:
    soon = (today + dt.timedelta(days=20)).isoformat()
    later = (today + dt.timedelta(days=400)).isoformat()
    expired = (today - dt.timedelta(days=10)).isoformat()
    return "\n".join([
        "id,name,vendor,status,google_client_ids,approved_scopes,audience,dpa_url,dpa_expires,alternative,notes",
        f"kahoot,Kahoot!,Kahoot ASA,Approved,{KAHOOT},openid;userinfo.email,All,https://district.example/dpa/kahoot.pdf,{later},,Reviewed by Ana Rivera",
        f"quizlet,Quizlet,Quizlet Inc.,Approved,{QUIZLET},openid;userinfo.email,All,https://district.example/dpa/quizlet.pdf,{soon},,",
        f"chatgpt,ChatGPT,OpenAI,Denied,{CHATGPT},,All,,,Gemini for Education,Ask chidi.okafor@district.org",
        f"padlet,Padlet,Wallwisher,Teacher use only,{PADLET},openid;userinfo.email,Staff,https://district.example/dpa/padlet.pdf,{expired},,",
        "book-creator,Book Creator,Tools for Schools,Approved,,,All,https://district.example/dpa/bookcreator.pdf,2030-06-30,,",
        f"mathquest,MathQuest,MathQuest LLC,Under review,{PENDING},,All,,,,",
    ]) + "\n"


def build_inventory(directory: Path, *, filename: str = "district.db", on: dt.date | None = None) -> Inventory:
    """Two real scans of the fake district (the second finds a new app) and a real catalog import.

    With `on`, the scans run a week apart, the second at 05:00 UTC that day, and the
    catalog's dates count from it: the same inventory every time (the screenshots need it).
    """
    db_path = directory / filename
    catalog_file = directory / "catalog.csv"
    catalog_file.write_text(catalog_csv(on or dt.date.today()), encoding="utf-8")
    tenant = district_with_usage(FakeTenant())
    no_config = Config(path=None, sections={}, schema=config_sections())  # never a developer's own app-inventory.toml
    second_scan = dt.datetime.combine(on, dt.time(5), dt.timezone.utc) if on else None
    with registered_tenant(tenant):
        with clock_at(second_scan - dt.timedelta(days=7) if on else None):
            first = run_scans(db_path, no_config, show_progress=False)
        assert first.failures == []
        with clock_at(second_scan - dt.timedelta(days=1) if on else None):
            store.replace_catalog(store.open_db(str(db_path)), read_catalog(catalog_file))
        tenant.apps.append(App(id=HOMEWORK_AI, name="Homework Helper AI"))
        tenant.grants += [Grant(user_id=u.id, app_id=HOMEWORK_AI, scopes=[*PROFILE, DRIVE]) for u in tenant.users[:2]]
        with clock_at(second_scan):
            second = run_scans(db_path, no_config, show_progress=False)
        assert second.failures == []
    return Inventory(
        db_path, [u.email for u in tenant.users], [u.name for u in tenant.users],
        [u.email for u in tenant.users if u.role == "staff"],
    )


@contextlib.contextmanager
def clock_at(moment: dt.datetime | None) -> Iterator[None]:
    """Stop the inventory's clock (scanner.timestamps.clock) at `moment` for the block; None leaves it running."""
    if moment is None:
        yield
        return
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(timestamps, "clock", lambda: moment)
        yield


def write_config(directory: Path, *, public: bool, accounts: bool = True, contact: str | None = None,
                 serve: list[str] = (), signin: list[str] = (), name: str | None = None) -> Path:
    """An app-inventory.toml with [serve] and [signin] sections for the tests (extra lines in serve and signin)."""
    lines = ["[serve]", f'district_name = "{DISTRICT_NAME}"', f"public = {'true' if public else 'false'}", *serve]
    if contact:
        lines.append(f'public_contact = "{contact}"')
    lines.append("[signin]")
    if accounts:
        lines.append(f'password_accounts = {{ {IT_USERNAME} = "{IT_HASH_VARIABLE}" }}')
    lines += signin
    path = directory / (name or ("public.toml" if public else "private.toml"))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


async def sign_in_cookies(datasette, username: str = IT_USERNAME, password: str = IT_PASSWORD) -> dict[str, str]:
    """Sign in through the real form (Datasette's client) and return the cookies of the session."""
    form = await datasette.client.get("/-/login")
    token = re.search(r'name="csrftoken" value="([^"]+)"', form.text).group(1)
    csrf = form.cookies["ds_csrftoken"]
    response = await datasette.client.post(
        "/-/login", data={"username": username, "password": password, "csrftoken": token}, cookies={"ds_csrftoken": csrf})
    assert response.status_code == 302, response.text
    return {"ds_actor": response.cookies["ds_actor"]}


@dataclass
class RunningServer:
    url: str
    output: str = ""  # what the command printed, filled in when it stops


# `app-inventory` with the inventory's clock stopped at the moment given first (screenshots
# whose pages show when a decision was recorded come out the same every run).
STOPPED_CLOCK = """
import datetime as dt, sys
from scanner import timestamps
moment = dt.datetime.fromisoformat(sys.argv.pop(1))
timestamps.clock = lambda: moment
from scanner.cli import cli
cli(prog_name="app-inventory")
"""


@contextlib.contextmanager
def serving(db_path: Path, config_path: Path, *, public: bool, env: dict[str, str],
            clock: dt.datetime | None = None) -> Iterator[RunningServer]:
    """Run the real `app-inventory serve` in a subprocess on a free port until the block ends
    (with `clock`, the inventory's clock stands at that moment)."""
    port = free_port()
    launcher = ["-m", "scanner"] if clock is None else ["-c", STOPPED_CLOCK, clock.isoformat()]
    command = [sys.executable, *launcher, "--db", str(db_path), "--config", str(config_path),
               "serve", "--port", str(port), *(["--public"] if public else [])]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    server = RunningServer(f"http://127.0.0.1:{port}")
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"app-inventory serve exited with {process.returncode}:\n{process.stdout.read()}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
            if time.monotonic() > deadline:
                raise RuntimeError("app-inventory serve did not start listening within 30 s")
            time.sleep(0.1)
        yield server
    finally:
        process.terminate()
        try:
            server.output = process.communicate(timeout=10)[0]
        except subprocess.TimeoutExpired:
            process.kill()
            server.output = process.communicate()[0]
