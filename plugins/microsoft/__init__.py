"""The Microsoft 365 provider: apps connected to the district's Entra ID tenant, through Graph.

    provider.py   signs in and runs the scan
    auth.py       MSAL client credentials (secret or certificate)
    client.py     the Graph HTTP client: paging, $batch, retries and throttling
    scan.py       what to fetch, concurrently, and in which order
    records.py    Graph objects -> records (pure, tested on recorded answers)
    posture.py    the consent settings and requests -> posture findings, consent requests (pure)
"""

from scanner import ConfigError, ConfigKey, hookimpl

SETTINGS = {
    "tenant_id": ConfigKey("str", required=True),
    "client_id": ConfigKey("str", required=True),
    "client_secret_env": ConfigKey("str"),
    "certificate_file": ConfigKey("path"),
    "certificate_thumbprint": ConfigKey("str"),
    "authority_host": ConfigKey("url", "https://login.microsoftonline.com"),
    "graph_url": ConfigKey("url", "https://graph.microsoft.com"),
    # How many Graph requests a scan keeps in flight at once.
    "concurrent_requests": ConfigKey("int", 6, minimum=1),
}

# [microsoft.revoke]: the separate app registration that may write (docs/revoke.md).
WRITE_SETTINGS = {
    "client_id": ConfigKey("str", required=True),
    "client_secret_env": ConfigKey("str"),
    "certificate_file": ConfigKey("path"),
    "certificate_thumbprint": ConfigKey("str"),
    # The pace of reads and writes in Graph's resource units (a single GET costs 1, a write 3);
    # Graph allows 8,000 per 10 seconds per app in a large tenant, fewer in a small one.
    "resource_units_per_second": ConfigKey("int", 500, minimum=1),
}


def check_settings(values, where):
    """A secret or a certificate, and a certificate with its thumbprint."""
    if not values.get("client_secret_env") and not values.get("certificate_file"):
        raise ConfigError(f"{where} needs client_secret_env or certificate_file (with certificate_thumbprint)")
    if values.get("certificate_file") and not values.get("certificate_thumbprint"):
        raise ConfigError(f"{where} certificate_thumbprint is required with certificate_file")


@hookimpl
def register_config_sections(register):
    """The [microsoft] section: the app registration the scan signs in as."""
    register("microsoft", SETTINGS, check=check_settings)
    register("microsoft.revoke", WRITE_SETTINGS, check=check_settings)


@hookimpl
def register_providers(register):
    # Imported here, not above: `app-inventory --help` must not load MSAL or requests.
    from .provider import Microsoft365

    register(Microsoft365)


@hookimpl
def register_revokers(register):
    """Removing delegated grants and app role assignments, narrowing grants, blocking apps (docs/revoke.md)."""
    from .revoke import MicrosoftRevoker

    register(MicrosoftRevoker)
