"""The Google Workspace provider: apps users connected with "Sign in with Google".

    provider.py   the scan: threads that call the APIs, one thread that yields records
    records.py    API answers -> records (pure, tested on recorded answers)
    auth.py       the service account's delegated credentials
    calls.py      paced, counted and retried single calls; the API clients
    batch.py      Directory API batches without the email package
    tokens.py     tokens.list for many users in concurrent batches
    users.py      users.list, page by page, on a background thread
    reports.py    the Reports API token log (last use, who changed what)
    policies.py   the admin console's app-access settings (Cloud Identity Policy API), org unit names
    posture.py    those settings -> posture findings (pure)
"""

from scanner import ConfigKey, hookimpl

SETTINGS = {
    "admin_email": ConfigKey("email", required=True),
    "service_account_file": ConfigKey("path", required=True),
    "customer": ConfigKey("str", "my_customer"),
    "api_root": ConfigKey("url", "https://admin.googleapis.com/"),
    # The Cloud Identity Policy API (the app-access settings the posture checks read).
    "policy_api_root": ConfigKey("url", "https://cloudidentity.googleapis.com/"),
    "requests_per_minute": ConfigKey("int", 2400, minimum=1),
    # GCP project numbers of the district's own OAuth clients (marked internal).
    "internal_project_numbers": ConfigKey("list[str]", []),
}

# [google.revoke]: writing is opt-in (docs/revoke.md). Both credentials keys are optional: by
# default the scan's own service account and admin delete the tokens.
WRITE_SETTINGS = {
    "service_account_file": ConfigKey("path"),
    "admin_email": ConfigKey("email"),
    # The pace of reads and deletes (the Admin SDK quota per admin); default: [google]'s.
    "requests_per_minute": ConfigKey("int", minimum=1),
}


@hookimpl
def register_config_sections(register):
    """The [google] section: the service account and the admin it acts for."""
    register("google", SETTINGS)
    register("google.revoke", WRITE_SETTINGS)


@hookimpl
def register_providers(register):
    # Imported here, not above: `app-inventory --help` must not load the Google client libraries.
    from .provider import GoogleWorkspace

    register(GoogleWorkspace)


@hookimpl
def register_revokers(register):
    """Deleting a user's tokens for an app (docs/revoke.md)."""
    from .revoke import GoogleRevoker

    register(GoogleRevoker)
