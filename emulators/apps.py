"""The apps of a synthetic district: what each is on Google and on Microsoft, and how many
students and staff connect it.

An `App` describes one product: its Google OAuth client (scopes, client type) and its
Microsoft application (the scopes a user consents to, admin consent for everyone,
application permissions), with adoption rates by role and the school levels it targets.
Ids are derived from the name, so a catalog can list them (examples/catalog.csv lists the
demo's). `DISTRICT_APPS` are the emulators' own: the apps of the tests' and the benchmark's
districts, with the cases a scanner must get right (two apps of one name, native and
anonymous clients, Unicode names, Chrome extensions, admin consent for everyone, a managed
identity, a retired app role, Microsoft's own apps). The demo brings its own list
(scanner.demo.apps).
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field

G = "https://www.googleapis.com/auth/"
GOOGLE_SIGN_IN = ("openid", G + "userinfo.email", G + "userinfo.profile")
MICROSOFT_SIGN_IN = ("openid", "profile", "email", "offline_access", "User.Read")
ALL_LEVELS = ("elementary", "middle", "high")
SECONDARY = ("middle", "high")

# The district's own Google Cloud project: its internal apps' client ids start with it.
DISTRICT_PROJECT_NUMBER = "123456789012"
# An application permission Microsoft Graph has since retired: assignments keep its id, Graph no longer names it.
RETIRED_GRAPH_ROLE = "Reports.Legacy.All"


def google_client_id(name: str, *, internal: bool = False, variant: str = "") -> str:
    """A Google OAuth client id for an app: `<project number>-<32 characters>.apps.googleusercontent.com`;
    `variant` tells apart two clients of one name (another developer)."""
    digest = hashlib.sha256(("google:" + name + (f"#{variant}" if variant else "")).encode()).hexdigest()
    project = DISTRICT_PROJECT_NUMBER if internal else f"{int(digest[:12], 16) % 10**12:012d}"
    return f"{project}-{digest[12:44]}.apps.googleusercontent.com"


def microsoft_app_id(name: str) -> str:
    """A Microsoft application (client) id for an app."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "https://apps.example/" + name))


@dataclass(frozen=True)
class App:
    """One product a district's people connect, on Google, Microsoft or both."""

    name: str
    publisher: str = ""
    google_scopes: tuple[str, ...] = ()  # empty: not a Google app
    microsoft_scopes: tuple[str, ...] = ()  # what a user consents to; empty: no per-user consent
    student_rate: float = 0.0  # share of students (at the levels it targets) who connect it
    staff_rate: float = 0.0
    levels: tuple[str, ...] = ALL_LEVELS
    verified: bool = True
    ownership: str = "third_party"  # "third_party" | "internal" | "first_party" (Microsoft's own) | "managed_identity"
    # Microsoft: admin consent for everyone (AllPrincipals) and application permissions on Graph.
    admin_consent_scopes: tuple[str, ...] = ()
    app_permissions: tuple[str, ...] = ()
    # Microsoft's admin consent workflow: the share of (students, staff) at its levels who asked an
    # administrator to consent to it (user consent does not cover what it asks for).
    request_rates: tuple[float, float] = (0.0, 0.0)
    # Scope creep: this share of grants holds these extra scopes.
    creep_rate: float = 0.0
    creep_google: tuple[str, ...] = ()
    creep_microsoft: tuple[str, ...] = ()
    # How the Google OAuth client looks.
    google_client_type: str = "WEB"  # token audit `client_type`: WEB, NATIVE_IOS, NATIVE_CHROME_EXTENSION, ...
    google_native: bool = False
    google_anonymous: bool = False
    google_variant: str = ""  # another developer's client of the same name
    # How the Microsoft application looks.
    microsoft_scope_text: str = ""  # the consent's scope string as Graph stores it (stray spaces and all), if not the joined scopes
    sharepoint_scopes: tuple[str, ...] = ()  # also consented on SharePoint (a second resource)
    homepage: str = ""
    fixed_google_id: str | None = field(default=None, compare=False)
    fixed_microsoft_id: str | None = field(default=None, compare=False)

    @property
    def google_id(self) -> str | None:
        if not self.google_scopes:
            return None
        return self.fixed_google_id or google_client_id(self.name, internal=self.ownership == "internal",
                                                        variant=self.google_variant)

    @property
    def microsoft_id(self) -> str | None:
        if not self.on_microsoft:
            return None
        return self.fixed_microsoft_id or microsoft_app_id(self.name)

    @property
    def on_microsoft(self) -> bool:
        return bool(self.microsoft_scopes or self.admin_consent_scopes or self.app_permissions)

    def scopes(self, provider: str) -> tuple[str, ...]:
        """What a user grants it on the provider ("google" or "microsoft"); empty: no per-user grant there."""
        return self.google_scopes if provider == "google" else self.microsoft_scopes

    def creep(self, provider: str) -> tuple[str, ...]:
        return self.creep_google if provider == "google" else self.creep_microsoft


def _app(name: str, publisher: str = "", google=(), microsoft=(), **details) -> App:
    return App(name, publisher, tuple(google), tuple(microsoft), **details)


_SIGN_IN = list(GOOGLE_SIGN_IN)
_MS = list(MICROSOFT_SIGN_IN)

DISTRICT_APPS: tuple[App, ...] = (
    # On both: the most used.
    _app("Kahoot!", "Kahoot ASA", _SIGN_IN, _MS, student_rate=0.30, staff_rate=0.35, homepage="https://kahoot.com/"),
    _app("Quizlet", "Quizlet Inc.", _SIGN_IN + [G + "drive.file"], _MS, student_rate=0.22, staff_rate=0.20,
         homepage="https://quizlet.com/"),
    _app("Canva for Education", "Canva Pty Ltd", _SIGN_IN + [G + "drive.file", G + "classroom.courses.readonly"],
         _MS + ["Files.ReadWrite"], student_rate=0.12, staff_rate=0.30),
    _app("Edpuzzle", "Edpuzzle Inc.", _SIGN_IN + [G + "classroom.rosters.readonly", G + "classroom.coursework.students"],
         _MS + ["EduRoster.ReadBasic"], student_rate=0.14, staff_rate=0.22),
    _app("Nearpod", "Nearpod Inc.", _SIGN_IN + [G + "classroom.courses.readonly", G + "drive.readonly"],
         _MS + ["EduRoster.ReadBasic"], student_rate=0.18, staff_rate=0.30),
    _app("Khan Academy", "Khan Academy", _SIGN_IN, _MS, student_rate=0.16, staff_rate=0.12),
    _app("Desmos Classroom", "Amplify Education", _SIGN_IN, _MS, student_rate=0.12, staff_rate=0.08),
    _app("Seesaw", "Seesaw Learning", _SIGN_IN + [G + "classroom.rosters.readonly"], _MS, student_rate=0.30, staff_rate=0.25),
    _app("Grammarly", "Grammarly Inc.", _SIGN_IN + [G + "documents"], _MS, student_rate=0.04, staff_rate=0.18),
    _app("Adobe Express", "Adobe Inc.", _SIGN_IN + [G + "drive.file"], _MS, student_rate=0.06, staff_rate=0.12),
    _app("Zoom", "Zoom Video Communications", _SIGN_IN + [G + "calendar.events"],
         _MS + ["Calendars.ReadWrite", "OnlineMeetings.ReadWrite"], student_rate=0.02, staff_rate=0.30),
    _app("Padlet", "Wallwisher Inc.", _SIGN_IN + [G + "drive.file"], _MS, student_rate=0.05, staff_rate=0.25),
    _app("Super Mail Merge", "mailmerge-dev", _SIGN_IN + ["https://mail.google.com/", G + "spreadsheets"],
         _MS + ["Mail.ReadWrite", "Mail.Send", "Contacts.Read"], student_rate=0.0, staff_rate=0.04, verified=False,
         request_rates=(0.0, 0.05)),
    # Google only.
    _app("Pear Deck", "GoGuardian", _SIGN_IN + [G + "drive.file", G + "presentations"], student_rate=0.12, staff_rate=0.12),
    _app("Flip", "Microsoft", _SIGN_IN + [G + "classroom.rosters.readonly"], student_rate=0.08, staff_rate=0.08),
    _app("Quiz Master", "Quiz Master Games", _SIGN_IN + [G + "forms.body"], student_rate=0.06, staff_rate=0.06),
    _app("Quiz Master", "QM Learning", _SIGN_IN + [G + "spreadsheets"], student_rate=0.04, staff_rate=0.04,
         google_variant="another developer"),  # the same name, another developer: two apps
    _app("Calendly", "Calendly LLC", _SIGN_IN + [G + "calendar"], student_rate=0.03, staff_rate=0.03),
    _app("Prodigy Math", "Prodigy Education", _SIGN_IN, student_rate=0.10, staff_rate=0.10),
    _app("Blooket", "Blooket LLC", _SIGN_IN, student_rate=0.12, staff_rate=0.12),
    _app("Gimkit", "Gimkit Inc.", _SIGN_IN, student_rate=0.08, staff_rate=0.08),
    _app("Book Creator", "Tools for Schools", _SIGN_IN + [G + "drive.file"], student_rate=0.04, staff_rate=0.04),
    _app("Screencastify", "Screencastify LLC", _SIGN_IN + [G + "drive.file", G + "youtube.upload"], student_rate=0.05,
         staff_rate=0.05, google_client_type="NATIVE_CHROME_EXTENSION"),
    _app("Mote", "Mote Technologies", _SIGN_IN + [G + "drive.file"], student_rate=0.04, staff_rate=0.04,
         google_client_type="NATIVE_CHROME_EXTENSION"),
    _app("Read&Write for Google Chrome™", "Texthelp", _SIGN_IN + [G + "drive", G + "documents"], student_rate=0.06,
         staff_rate=0.06, google_client_type="NATIVE_CHROME_EXTENSION"),
    _app("Éducation Musicale ♪", "Musique à l'école", _SIGN_IN, student_rate=0.02, staff_rate=0.02),
    _app("数学パズル", "Sansu Lab", _SIGN_IN, student_rate=0.01, staff_rate=0.01),
    _app("Schoology", "PowerSchool", _SIGN_IN + [G + "drive", G + "classroom.courses"], student_rate=0.03, staff_rate=0.03),
    _app("iOS Account Manager", "Apple", _SIGN_IN + ["https://mail.google.com/", G + "calendar", G + "carddav"],
         student_rate=0.04, staff_rate=0.04, google_native=True, google_client_type="NATIVE_IOS"),
    _app("Android device", "Google", _SIGN_IN + ["https://mail.google.com/", G + "calendar"], student_rate=0.03,
         staff_rate=0.03, google_native=True, google_client_type="NATIVE_ANDROID"),
    _app("Unregistered script", "", _SIGN_IN + [G + "drive"], student_rate=0.01, staff_rate=0.01, verified=False,
         google_anonymous=True, google_client_type="TYPE_UNSPECIFIED"),
    _app("District Attendance Sync", "", _SIGN_IN + [G + "classroom.rosters.readonly"], student_rate=0.03, staff_rate=0.03,
         ownership="internal"),
    # Microsoft only.
    _app("ChatGPT", "OpenAI", microsoft=_MS, student_rate=0.05, staff_rate=0.10),
    _app("Discord", "Discord Inc.", microsoft=["openid", "profile", "email", "User.Read"], student_rate=0.04,
         staff_rate=0.01, verified=False),
    _app("Turnitin", "Turnitin LLC", microsoft=_MS + ["Files.Read.All"], student_rate=0.06, staff_rate=0.08,
         sharepoint_scopes=("MyFiles.Read",), request_rates=(0.01, 0.05)),
    _app("Wakelet", "Wakelet Ltd", microsoft=_MS, student_rate=0.03, staff_rate=0.08),
    _app("Remind", "Remind101 Inc.", microsoft=_MS + ["Contacts.Read"], student_rate=0.02, staff_rate=0.20),
    _app("ClassDojo", "ClassDojo Inc.", microsoft=_MS, student_rate=0.05, staff_rate=0.20),
    _app("Quizizz", "Quizizz Inc.", microsoft=_MS, student_rate=0.10, staff_rate=0.10),
    _app("MagicSchool AI", "MagicSchool AI", microsoft=_MS, student_rate=0.0, staff_rate=0.15, verified=False,
         request_rates=(0.0, 0.10)),
    _app("Homework Helper Pro", "", microsoft=["openid", "profile", "User.Read", "Files.ReadWrite.All"], student_rate=0.03,
         verified=False, microsoft_scope_text=" openid profile  User.Read Files.ReadWrite.All", request_rates=(0.02, 0.0)),
    # Admin consent for everyone, and application permissions (no user in the loop).
    _app("Clever", "Clever Inc.", admin_consent_scopes=("openid", "profile", "User.Read", "EduRoster.ReadBasic"),
         app_permissions=("EduRoster.Read.All", "User.Read.All")),
    _app("Kami", "Kami Ltd", microsoft=_MS + ["Files.ReadWrite"], student_rate=0.05, staff_rate=0.05,
         admin_consent_scopes=("User.Read", "Files.ReadWrite")),
    _app("Securly", "Securly Inc.", app_permissions=("User.Read.All", "Group.Read.All", "Directory.Read.All")),
    _app("GoGuardian Admin", "GoGuardian", app_permissions=("User.Read.All", "Directory.Read.All")),
    _app("Cloud Backup for Schools", "Backupify Inc.", verified=False,
         app_permissions=("Mail.Read", "Files.Read.All", "Sites.Read.All", "User.Read.All", RETIRED_GRAPH_ROLE)),
    # The district's own apps.
    _app("Springfield Staff Portal", "", microsoft=["openid", "profile", "User.Read"], staff_rate=0.5, verified=False,
         ownership="internal"),
    _app("SIS Roster Sync", "", app_permissions=("User.Read.All", "Group.Read.All"), verified=False, ownership="internal"),
    _app("district-automation", "", app_permissions=("User.Read.All",), verified=False, ownership="managed_identity"),
    # Microsoft's own clients (first party): consents by the IT staff who used them.
    _app("Microsoft Graph Command Line Tools", "Microsoft Services",
         microsoft=["openid", "profile", "offline_access", "User.Read", "Directory.Read.All"], staff_rate=0.01,
         verified=False, ownership="first_party"),
    _app("Graph Explorer", "Microsoft Services", microsoft=["openid", "profile", "User.Read"], staff_rate=0.01,
         verified=False, ownership="first_party"),
    _app("Microsoft Teams Services", "Microsoft Services", app_permissions=("User.Read.All",), verified=False,
         ownership="first_party"),
)

_EXTRA_MICROSOFT_SCOPES = ((), ("Files.Read",), ("Calendars.Read",), ("EduRoster.ReadBasic",), ("Mail.Read",))


def small_apps(count: int) -> tuple[App, ...]:
    """`count` small third-party apps ("EdTech Tool 001", ...), on both providers, as large districts have."""
    apps = []
    for n in range(1, count + 1):
        draw = hashlib.sha256(f"extra app {n}".encode()).digest()
        apps.append(_app(
            f"EdTech Tool {n:03d}", f"EdTech Vendor {n:03d}", _SIGN_IN + [G + "drive.file"],
            _MS + list(_EXTRA_MICROSOFT_SCOPES[draw[0] % len(_EXTRA_MICROSOFT_SCOPES)]),
            student_rate=(0.0, 0.002, 0.01, 0.02)[draw[1] % 4], staff_rate=(0.002, 0.01, 0.03)[draw[2] % 3],
            verified=n % 3 != 0))
    return tuple(apps)


def district_apps(extra: int = 0) -> tuple[App, ...]:
    """The emulators' apps, and `extra` small ones."""
    return DISTRICT_APPS + small_apps(extra)


__all__ = ["ALL_LEVELS", "App", "DISTRICT_APPS", "DISTRICT_PROJECT_NUMBER", "GOOGLE_SIGN_IN", "MICROSOFT_SIGN_IN",
           "RETIRED_GRAPH_ROLE", "SECONDARY", "district_apps", "google_client_id", "microsoft_app_id", "small_apps"]
