"""The apps of the demo district: real-world edtech names with plausible ids and scopes.

Each is an emulators.apps.App. Ids are derived from the name, so examples/catalog.csv
(the demo's catalog) can list the same ids; a test checks the two agree. Adoption rates
are the share of students or staff (in the schools the app targets) who connected it with
Google; fewer connect it with Microsoft (see scanner.demo.tenants). `request_rates` are the
share who asked IT, through Microsoft's admin consent workflow, to allow an app that user
consent does not cover.
"""

from __future__ import annotations

from emulators.apps import GOOGLE_SIGN_IN, MICROSOFT_SIGN_IN, SECONDARY, App

G = "https://www.googleapis.com/auth/"
SIGN_IN = list(GOOGLE_SIGN_IN)
ROSTER = [G + "classroom.courses.readonly", G + "classroom.rosters.readonly"]
MS_SIGN_IN = list(MICROSOFT_SIGN_IN)

# The district's own Entra tenant (for "internal" apps; its Google Cloud project is emulators.apps.DISTRICT_PROJECT_NUMBER).
DISTRICT_TENANT_ID = "5f1b7c3e-2a4d-4e8f-9b6a-1c2d3e4f5a6b"


def _app(name, publisher, google=(), microsoft=(), **kwargs) -> App:
    return App(name, publisher, tuple(google), tuple(microsoft), **kwargs)


DEMO_APPS: tuple[App, ...] = (
    # In the catalog as approved or conditional.
    _app("Kahoot!", "Kahoot ASA", SIGN_IN + ROSTER, MS_SIGN_IN, student_rate=0.30, staff_rate=0.35,
         creep_rate=0.06, creep_google=(G + "drive.readonly",)),
    _app("Quizlet", "Quizlet Inc.", SIGN_IN, MS_SIGN_IN, student_rate=0.22, staff_rate=0.20, levels=SECONDARY),
    _app("Nearpod", "Nearpod Inc.", SIGN_IN + ROSTER + [G + "drive.file"], MS_SIGN_IN + ["EduRoster.ReadBasic"],
         student_rate=0.18, staff_rate=0.30, creep_rate=0.04, creep_google=(G + "drive",)),
    _app("Pear Deck", "GoGuardian", SIGN_IN + [G + "drive.file", G + "presentations"] + ROSTER, student_rate=0.15, staff_rate=0.25),
    _app("Edpuzzle", "Edpuzzle Inc.", SIGN_IN + ROSTER + [G + "classroom.coursework.students"], MS_SIGN_IN,
         student_rate=0.14, staff_rate=0.22, levels=SECONDARY),
    _app("Newsela", "Newsela Inc.", SIGN_IN + ROSTER, student_rate=0.10, staff_rate=0.15),
    _app("Khan Academy", "Khan Academy", SIGN_IN + ROSTER, MS_SIGN_IN, student_rate=0.16, staff_rate=0.12),
    _app("Canva for Education", "Canva Pty Ltd", SIGN_IN + [G + "drive.file"], MS_SIGN_IN + ["Files.ReadWrite"],
         student_rate=0.12, staff_rate=0.30, creep_rate=0.05, creep_microsoft=("Files.ReadWrite.All",)),
    _app("Seesaw", "Seesaw Learning", SIGN_IN, MS_SIGN_IN, student_rate=0.35, staff_rate=0.30, levels=("elementary",)),
    _app("Book Creator", "Tools for Schools", SIGN_IN + [G + "drive.file"], MS_SIGN_IN, student_rate=0.08, staff_rate=0.10, levels=("elementary", "middle")),
    _app("Desmos Classroom", "Amplify Education", SIGN_IN + ROSTER, MS_SIGN_IN, student_rate=0.12, staff_rate=0.08, levels=SECONDARY),
    _app("Wakelet", "Wakelet Ltd", SIGN_IN + [G + "drive.file"], MS_SIGN_IN, student_rate=0.03, staff_rate=0.08),
    _app("Padlet", "Wallwisher Inc.", SIGN_IN + [G + "drive.file"], MS_SIGN_IN, student_rate=0.05, staff_rate=0.25),
    _app("Adobe Express", "Adobe Inc.", SIGN_IN + [G + "drive.file"], MS_SIGN_IN, student_rate=0.06, staff_rate=0.12),
    _app("Zoom", "Zoom Communications", SIGN_IN + [G + "calendar.events"], MS_SIGN_IN + ["Calendars.ReadWrite"],
         student_rate=0.02, staff_rate=0.30),
    _app("Grammarly", "Grammarly Inc.", SIGN_IN, MS_SIGN_IN, student_rate=0.04, staff_rate=0.18, levels=SECONDARY),
    _app("Remind", "Remind101 Inc.", SIGN_IN + [G + "contacts.readonly"], MS_SIGN_IN, student_rate=0.02, staff_rate=0.20),
    # In the catalog as denied or pending.
    _app("Yet Another Mail Merge", "Talarian", SIGN_IN + ["https://mail.google.com/", G + "spreadsheets", G + "drive.readonly"],
         student_rate=0.0, staff_rate=0.06),
    _app("ChatGPT", "OpenAI", SIGN_IN, MS_SIGN_IN, student_rate=0.05, staff_rate=0.10, levels=("high",),
         request_rates=(0.02, 0.10)),
    _app("Discord", "Discord Inc.", SIGN_IN, MS_SIGN_IN, student_rate=0.04, staff_rate=0.01, levels=SECONDARY),
    _app("Blooket", "Blooket LLC", SIGN_IN + ROSTER, student_rate=0.14, staff_rate=0.10),
    _app("Gimkit", "Gimkit Inc.", SIGN_IN + ROSTER, student_rate=0.06, staff_rate=0.06, levels=SECONDARY),
    _app("MagicSchool AI", "MagicSchool AI", SIGN_IN + [G + "drive.file"], MS_SIGN_IN, student_rate=0.0, staff_rate=0.15,
         request_rates=(0.0, 0.08)),
    # Not in the catalog yet: real apps staff and students connected on their own.
    _app("Quizizz", "Quizizz Inc.", SIGN_IN + ROSTER + [G + "classroom.coursework.students"], MS_SIGN_IN, student_rate=0.10, staff_rate=0.10),
    _app("Prodigy Math", "Prodigy Education", SIGN_IN + ROSTER, student_rate=0.12, staff_rate=0.05, levels=("elementary", "middle")),
    _app("IXL", "IXL Learning", SIGN_IN + ROSTER + [G + "classroom.profile.emails"], MS_SIGN_IN, student_rate=0.10, staff_rate=0.06),
    _app("BrainPOP", "BrainPOP LLC", SIGN_IN, student_rate=0.08, staff_rate=0.06, levels=("elementary", "middle")),
    _app("Formative", "Goformative Inc.", SIGN_IN + ROSTER + [G + "classroom.coursework.students", G + "drive.file"], student_rate=0.05, staff_rate=0.06, levels=SECONDARY),
    _app("ClassDojo", "ClassDojo Inc.", SIGN_IN, MS_SIGN_IN, student_rate=0.05, staff_rate=0.20, levels=("elementary",)),
    _app("Turnitin", "Turnitin LLC", SIGN_IN + [G + "drive.readonly"], MS_SIGN_IN + ["Files.Read.All"], student_rate=0.06, staff_rate=0.08, levels=("high",),
         request_rates=(0.01, 0.06)),
    _app("Brisk Teaching", "Brisk Labs", SIGN_IN + [G + "documents", G + "drive.file"] + ROSTER, student_rate=0.0, staff_rate=0.12),
    _app("Diffit", "Diffit Inc.", SIGN_IN + [G + "drive.file"], student_rate=0.0, staff_rate=0.08),
    _app("Curipod", "Curipod AS", SIGN_IN + ROSTER, student_rate=0.03, staff_rate=0.05),
    _app("Screencastify", "Screencastify LLC", SIGN_IN + [G + "drive.file", G + "youtube.upload"], student_rate=0.04, staff_rate=0.12),
    _app("Loom", "Loom Inc.", SIGN_IN + [G + "calendar.readonly"], MS_SIGN_IN + ["Calendars.Read"], student_rate=0.0, staff_rate=0.07),
    _app("WeVideo", "WeVideo Inc.", SIGN_IN + [G + "drive.file", G + "classroom.coursework.students"], student_rate=0.04, staff_rate=0.04, levels=SECONDARY),
    _app("Flocabulary", "Nearpod Inc.", SIGN_IN, student_rate=0.04, staff_rate=0.03),
    _app("Boom Cards", "Boom Learning", SIGN_IN + ROSTER, student_rate=0.05, staff_rate=0.04, levels=("elementary",)),
    _app("Epic", "Epic Creations Inc.", SIGN_IN + [G + "classroom.rosters.readonly"], student_rate=0.08, staff_rate=0.05, levels=("elementary",)),
    _app("Duolingo", "Duolingo Inc.", SIGN_IN, MS_SIGN_IN, student_rate=0.05, staff_rate=0.03, levels=SECONDARY),
    _app("Typing.com", "Teaching.com", SIGN_IN + ROSTER, student_rate=0.08, staff_rate=0.02),
    _app("Code.org", "Code.org", SIGN_IN + ROSTER, MS_SIGN_IN, student_rate=0.06, staff_rate=0.03),
    _app("Tinkercad", "Autodesk Inc.", SIGN_IN, MS_SIGN_IN, student_rate=0.03, staff_rate=0.02, levels=SECONDARY),
    # Admin-consented Microsoft apps (tenant-wide) with application permissions.
    _app("Clever", "Clever Inc.", SIGN_IN, admin_consent_scopes=tuple(MS_SIGN_IN + ["EduRoster.ReadBasic"]),
         app_permissions=("EduRoster.Read.All", "User.Read.All"), student_rate=0.20, staff_rate=0.10),
    _app("Securly", "Securly Inc.", admin_consent_scopes=("openid", "profile", "User.Read"),
         app_permissions=("Directory.Read.All", "Group.Read.All")),
    _app("GoGuardian Admin", "GoGuardian", admin_consent_scopes=("openid", "profile", "User.Read"), app_permissions=("User.Read.All",)),
    # Risky apps nobody reviewed: broad scopes, often unverified publishers.
    _app("PDF Merge Pro", "pdfmergepro.app", SIGN_IN + [G + "drive"], student_rate=0.02, staff_rate=0.05, verified=False),
    _app("Inbox AI Assistant", "InboxAI Labs", SIGN_IN + ["https://mail.google.com/", G + "gmail.send"], MS_SIGN_IN + ["Mail.ReadWrite", "Mail.Send"],
         student_rate=0.0, staff_rate=0.03, verified=False, request_rates=(0.0, 0.05)),
    _app("Homework Solver AI", "HW Solver", SIGN_IN + [G + "drive.readonly", G + "classroom.coursework.me"], MS_SIGN_IN + ["Files.Read.All"],
         student_rate=0.04, staff_rate=0.0, levels=SECONDARY, verified=False),
    _app("Sheets Auto Mailer", "automailer.dev", SIGN_IN + [G + "spreadsheets", G + "script.external_request", G + "gmail.send"],
         student_rate=0.0, staff_rate=0.02, verified=False),
    _app("Photo Booth Stickers", "Sticker Fun Ltd", SIGN_IN + [G + "drive", G + "contacts.readonly"], student_rate=0.03, staff_rate=0.0,
         levels=("elementary", "middle"), verified=False),
    _app("OneDrive Sync Helper", "CloudTools", microsoft=MS_SIGN_IN + ["Files.ReadWrite.All", "Sites.Read.All"], student_rate=0.01, staff_rate=0.04, verified=False),
    # The district's own apps.
    _app("Springfield Library Portal", "Springfield Public Schools", SIGN_IN, student_rate=0.15, staff_rate=0.2, ownership="internal"),
    _app("Springfield SIS Sync", "Springfield Public Schools", app_permissions=("User.Read.All", "Group.ReadWrite.All"), ownership="internal"),
    # Microsoft's own apps (first-party): recorded, never reported as third-party.
    _app("Microsoft Graph Command Line Tools", "Microsoft", microsoft=("openid", "profile", "User.Read", "Directory.Read.All"),
         staff_rate=0.02, ownership="first_party", fixed_microsoft_id="14d82eec-204b-4c2f-b7e8-296a70dab67e"),
    _app("Graph Explorer", "Microsoft", microsoft=("openid", "profile", "User.Read", "Mail.Read"), staff_rate=0.01,
         ownership="first_party", fixed_microsoft_id="de8bc8b5-d9f9-48b1-a8ad-b748da725064"),
)
