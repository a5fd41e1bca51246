"""The Chrome extensions provider: extensions installed in the district's managed browsers.

    provider.py   the scan: installed extensions, who has each, Web Store details, requests
    records.py    API answers -> records (pure)
    client.py     the Chrome Management API client, one token per scope

It signs in as the [google] section's service account and admin (domain-wide delegation),
and reuses the Google provider's sign-in, pacing and retries (plugins.google).
"""

from scanner import ConfigKey, hookimpl

SETTINGS = {
    "enabled": ConfigKey("bool", True),
    # chromemanagement.googleapis.com: its own quota, smaller than the Admin SDK's.
    "api_root": ConfigKey("url", "https://chromemanagement.googleapis.com/"),
    "requests_per_minute": ConfigKey("int", 600, minimum=1),
    # Read people's extension requests (needs Chrome's CloudExtensionRequestEnabled policy to have any).
    "requests": ConfigKey("bool", True),
}


@hookimpl
def register_config_sections(register):
    """The [chrome] section: whether to scan extensions, and how fast."""
    register("chrome", SETTINGS)


@hookimpl
def register_providers(register):
    # Imported here, not above: `app-inventory --help` must not load the Google client libraries.
    from .provider import ChromeExtensions

    register(ChromeExtensions)
