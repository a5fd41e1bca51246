import contextlib
import socket
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest
from click.testing import CliRunner

from scanner.hookspecs import hookimpl
from scanner.plugin_manager import pm
from scanner.providers import App, Grant, GrantsListed, LastUsed, Provider, ProviderError, ScanRun, User

# Fixture modules, registered once: tests use their fixtures without importing them.
pytest_plugins = ["tests.alerts_fixtures", "tests.browser_fixtures", "tests.google_fixtures", "tests.microsoft_fixtures", "tests.publish_fixtures",
                  "tests.sso_fixtures"]


def pytest_configure(config):
    # Third-party plugins installed on this machine must not change test results.
    sys._called_from_test = True


@dataclass
class FakeTenant:
    """A tenant described by data, served by FakeProvider. Tests edit it between scans."""

    users: list[User] = field(default_factory=list)
    apps: list[App] = field(default_factory=list)
    grants: list[Grant] = field(default_factory=list)
    last_used: list[LastUsed] = field(default_factory=list)
    posture: list = field(default_factory=list)  # PostureFinding and ConsentRequest records, yielded last
    fail_after: int | None = None  # raise after yielding this many records
    incremental_users: list[str] | None = None  # scan only these users' grants, incrementally
    users_last: bool = False  # yield the grants before the users (Microsoft lists the tenant's grants apart)
    runs: list[ScanRun] = field(default_factory=list)
    probe: Callable[[ScanRun], None] | None = None  # called with the run after the last record

    def scan(self, run: ScanRun) -> Iterator:
        self.runs.append(run)
        run.tenant = f"{run.provider}.example.org"
        run.new_state = {"scans_so_far": run.state.get("scans_so_far", 0) + 1}
        run.progress.start(len(self.users))
        records: list = [*self.apps]
        if self.incremental_users is not None and run.incremental_allowed():
            run.mode = "incremental"
            for user_id in self.incremental_users:
                records += [g for g in self.grants if g.user_id == user_id]
                records.append(GrantsListed(user_id))
            records += [u for u in self.users if u.id in self.incremental_users]
        else:
            records += self.grants + self.users if self.users_last else self.users + self.grants
        records += self.last_used + self.posture
        for count, record in enumerate(records):
            if self.fail_after is not None and count >= self.fail_after:
                raise ProviderError("the fake API stopped answering")
            run.count_call()
            yield record
            if isinstance(record, User):
                run.progress.advance()
        if self.probe is not None:
            self.probe(run)


@contextlib.contextmanager
def registered_tenant(tenant: FakeTenant, name: str = "fake") -> Iterator[FakeTenant]:
    """Serve `tenant` as the provider `name` ("fake") for the duration (usable outside function
    fixtures); two at once, under two names, play a district on two providers."""

    class FakeProvider(Provider):
        label = f"Fake {name.title()}"

        @classmethod
        def is_configured(cls, config):
            return True

        def scan(self, run):
            return tenant.scan(run)

    class FakePlugin:
        __name__ = "FakePlugin"

        @hookimpl
        def register_providers(self, register):
            register(FakeProvider)

    FakeProvider.name = name
    pm.register(FakePlugin(), name=f"undo-{name}-provider")
    try:
        yield tenant
    finally:
        pm.unregister(name=f"undo-{name}-provider")


@pytest.fixture
def fake_tenant():
    with registered_tenant(FakeTenant()) as tenant:
        yield tenant


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def db_path(tmp_path):
    return str(tmp_path / "inventory.db")


@pytest.fixture
def runner():
    return CliRunner()


def district_tenant(tenant: FakeTenant) -> FakeTenant:
    """A small district: two staff, two students, three apps."""
    tenant.users = [
        User(id="1", email="ms.rivera@district.org", name="Ana Rivera", role="staff", org_unit="/Staff/Lincoln Elementary", is_admin=True),
        User(id="2", email="mr.okafor@district.org", name="Chidi Okafor", role="staff", org_unit="/Staff/Central High"),
        User(id="3", email="jlee@students.district.org", name="Jamie Lee", role="student", org_unit="/Students/Central High"),
        User(id="4", email="zoë.müller@students.district.org", name="Zoë Müller", role="student", org_unit="/Students/Central High"),
    ]
    tenant.apps = [
        App(id="111-kahoot.apps.googleusercontent.com", name="Kahoot!", publisher="Kahoot ASA"),
        App(id="222-quizlet.apps.googleusercontent.com", name="Quizlet"),
        App(id="333-mailer.apps.googleusercontent.com", name="Super Mail Merge"),
    ]
    profile = ["openid", "https://www.googleapis.com/auth/userinfo.email"]
    tenant.grants = [
        Grant(user_id="1", app_id="111-kahoot.apps.googleusercontent.com", scopes=profile),
        Grant(user_id="3", app_id="111-kahoot.apps.googleusercontent.com", scopes=profile),
        Grant(user_id="4", app_id="222-quizlet.apps.googleusercontent.com", scopes=[*profile, "https://www.googleapis.com/auth/drive.file"]),
        Grant(user_id="2", app_id="333-mailer.apps.googleusercontent.com", scopes=[*profile, "https://mail.google.com/"]),
    ]
    return tenant
