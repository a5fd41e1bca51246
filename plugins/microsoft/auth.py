"""Signing in to Microsoft Graph as the district's app registration (MSAL, client credentials).

MSAL fetches the tenant's openid-configuration when the application object is made
(so a wrong tenant or an unreachable authority shows up at once), then asks the
token endpoint for `<graph_url>/.default` and caches the token until five minutes
before it expires. A 4xx from the token endpoint comes back as a dict, which is
turned here into a message saying what to fix; a 5xx raises.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import msal
import requests
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from scanner import Config, ProviderError

log = logging.getLogger(__name__)

PORTAL = "Microsoft Entra admin center > Identity > Applications > App registrations"
TOKEN_ATTEMPTS = 3
# MSAL answers a repeated token request from its cache of the failure for the failure's
# Retry-After, or 5 s without one; trying again sooner would only read that cache.
TOKEN_RETRY_WAIT = 5.5


class GraphToken:
    """Access tokens for Microsoft Graph; safe to share between threads."""

    def __init__(self, app: msal.ConfidentialClientApplication, *, scope: str, describe_failure):
        self._app = app
        self._scope = scope
        self._describe_failure = describe_failure
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, config: Config, http_client: requests.Session, *, credentials: str = "microsoft") -> GraphToken:
        """Build the MSAL application from [microsoft]; raises ProviderError with what to fix.
        `credentials` names another section with the app registration's own client_id and secret
        or certificate ([microsoft.revoke]); the tenant and URLs stay [microsoft]'s."""
        settings = config.section("microsoft")
        if credentials != "microsoft":
            own = {key: value for key, value in config.section(credentials).items() if value is not None}
            settings = {**settings, "client_secret_env": None, "certificate_file": None, "certificate_thumbprint": None, **own}
        tenant_id, client_id = settings["tenant_id"], settings["client_id"]
        authority_host = settings["authority_host"].rstrip("/")
        if not authority_host.startswith("https://"):
            raise ProviderError(f"{config.where}: [microsoft] authority_host must be an https:// URL (MSAL accepts nothing else), got {authority_host!r}")
        if settings.get("certificate_file"):
            credential, how = _certificate_credential(config, settings), "certificate"
        else:
            credential, how = config.secret(credentials, "client_secret_env"), "secret"
        options = {"authority": f"{authority_host}/{tenant_id}", "client_credential": credential,
                   "http_client": http_client, "azure_region": False, "token_cache": msal.TokenCache()}
        if urlsplit(authority_host).hostname not in msal.authority.WELL_KNOWN_AUTHORITY_HOSTS:
            options["instance_discovery"] = False  # MSAL would ask login.microsoftonline.com about this host
        try:
            app = msal.ConfidentialClientApplication(client_id, **options)
        except ValueError as error:
            if "authority configuration" in str(error):
                raise ProviderError(
                    f"Microsoft sign-in at {authority_host} does not know the tenant {tenant_id!r}: check [microsoft] tenant_id "
                    f"in {config.where} (the Directory (tenant) ID on the Overview page of the Microsoft Entra admin center)"
                ) from None
            raise ProviderError(f"{config.where}: [microsoft] authority_host or tenant_id is not usable: {error}") from None
        except requests.RequestException as error:
            raise ProviderError(_unreachable(authority_host, error, config)) from None
        secret_env = settings.get("client_secret_env")
        return cls(app, scope=f"{settings['graph_url'].rstrip('/')}/.default",
                   describe_failure=lambda result: _describe_token_error(result, client_id, tenant_id, how, secret_env, settings, config))

    def get(self) -> str:
        """A valid access token (from MSAL's cache when it has one)."""
        with self._lock:
            attempt = 1
            while True:
                try:
                    result = self._app.acquire_token_for_client(scopes=[self._scope])
                except (msal.exceptions.MsalServiceError, requests.RequestException) as error:  # a 5xx, or no answer
                    if attempt == TOKEN_ATTEMPTS:
                        raise ProviderError(self._transient_failure(error)) from None
                    attempt += 1
                    time.sleep(TOKEN_RETRY_WAIT)
                    continue
                except ValueError:  # a 4xx whose body is not JSON: not Microsoft's sign-in
                    raise ProviderError(f"the sign-in endpoint {self._app.authority.token_endpoint} did not answer like "
                                        "Microsoft sign-in; check [microsoft] authority_host") from None
                if "access_token" in result:
                    return result["access_token"]
                raise ProviderError(self._describe_failure(result))

    def _transient_failure(self, error: Exception) -> str:
        if isinstance(error, requests.RequestException):
            return _unreachable(self._app.authority.token_endpoint, error, None)
        return f"Microsoft sign-in failed {TOKEN_ATTEMPTS} times ({error}); this is on Microsoft's side: try again later"

    def renew(self) -> None:
        """Forget cached tokens (Graph said the one we used is no longer valid)."""
        with self._lock:
            self._app.remove_tokens_for_client()


def _certificate_credential(config: Config, settings: dict) -> dict:
    path = Path(settings["certificate_file"])
    try:
        pem = path.read_bytes()
    except OSError as error:
        raise ProviderError(f"{config.where}: [microsoft] certificate_file {path}: cannot read it ({error.strerror})") from None
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError):
        raise ProviderError(
            f"{config.where}: [microsoft] certificate_file {path} must hold the certificate's private key in PEM, "
            "not encrypted (protect the file with permissions instead)"
        ) from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ProviderError(f"{config.where}: [microsoft] certificate_file {path} holds a {type(key).__name__} key; "
                            "Microsoft Entra app certificates must use RSA keys")
    thumbprint = settings["certificate_thumbprint"].replace(":", "").replace(" ", "").upper()
    if b"-----BEGIN CERTIFICATE-----" in pem:
        certificate = x509.load_pem_x509_certificate(pem[pem.index(b"-----BEGIN CERTIFICATE-----"):])
        actual = hashlib.sha1(certificate.public_bytes(serialization.Encoding.DER)).hexdigest().upper()
        if actual != thumbprint:
            raise ProviderError(
                f"{config.where}: [microsoft] certificate_thumbprint {thumbprint} is not the thumbprint of the certificate in "
                f"{path} ({actual}); copy the thumbprint shown under Certificates & secrets for that certificate"
            )
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return {"private_key": key_pem.decode(), "thumbprint": thumbprint}


def _describe_token_error(result: dict, client_id: str, tenant_id: str, how: str, secret_env: str | None,
                          settings: dict, config: Config) -> str:
    codes = result.get("error_codes") or []
    error = result.get("error", "error")
    first_sentence = (result.get("error_description") or "").split(" Trace ID:")[0].strip()
    registration = f"{PORTAL} > {client_id}"
    if 7000215 in codes:
        return (f"the client secret for app {client_id} was rejected (AADSTS7000215): in {registration} > Certificates & "
                f"secrets, create a new client secret and export its Value (not its Secret ID) in {secret_env}")
    if 7000222 in codes:
        return (f"the client secret for app {client_id} has expired (AADSTS7000222): in {registration} > Certificates & "
                f"secrets, create a new one and export it in {secret_env} (a certificate avoids yearly secret renewals)")
    if 700016 in codes:
        return (f"no application with client id {client_id} in tenant {tenant_id} (AADSTS700016): check [microsoft] client_id "
                f"in {config.where} (the Application (client) ID of the app registration) and tenant_id")
    if 90002 in codes:
        return f"tenant {tenant_id} was not found (AADSTS90002): check [microsoft] tenant_id in {config.where}"
    if 500011 in codes or error == "invalid_resource":
        return (f"Microsoft sign-in does not know the resource {settings['graph_url']} (AADSTS500011): [microsoft] graph_url "
                "should be https://graph.microsoft.com")
    if how == "certificate" and error == "invalid_client":
        return (f"the certificate for app {client_id} was rejected ({first_sentence[:200]}): upload the certificate with "
                f"thumbprint {settings['certificate_thumbprint']} in {registration} > Certificates & secrets")
    if error == "invalid_client":
        return f"the credentials of app {client_id} were rejected: {first_sentence[:300]}"
    return f"Microsoft sign-in refused app {client_id}: {error}: {first_sentence[:300]}"


def _unreachable(where: str, error: requests.RequestException, config: Config | None) -> str:
    reason = str(error).splitlines()[0][:200] if str(error) else type(error).__name__
    if isinstance(error, requests.exceptions.SSLError):
        return (f"cannot connect securely to Microsoft sign-in at {where}: its certificate is not trusted ({reason}); "
                "if a proxy inspects TLS, point REQUESTS_CA_BUNDLE at a bundle holding its CA")
    hint = f"; check the network, a proxy (HTTPS_PROXY), and [microsoft] authority_host in {config.where}" if config else ""
    return f"cannot reach Microsoft sign-in at {where} ({reason}){hint}"
