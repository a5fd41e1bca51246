"""The Microsoft identity platform side of the emulator: what MSAL requests for client credentials.

MSAL asks `GET /{tenant}/v2.0/.well-known/openid-configuration` once per application
object, then `POST /{tenant}/oauth2/v2.0/token` with the client secret or a signed
client assertion in the form body. Instance discovery
(`/common/discovery/instance`) is answered too, although MSAL skips it for a host
it does not know when the scanner passes instance_discovery=False.

Errors have Entra's shape (`error`, `error_description` starting with the AADSTS
code, `error_codes`, trace and correlation ids) and its codes: AADSTS90002 unknown
tenant, AADSTS700016 unknown application, AADSTS7000215 wrong secret, AADSTS7000222
expired secret, AADSTS700027 bad certificate assertion, AADSTS500011 unknown resource.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import threading
import uuid
from dataclasses import dataclass

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from ..clock import Clock
from .tenant import MicrosoftTenant

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


@dataclass
class IssuedToken:
    client_id: str
    roles: frozenset[str]
    expires_at: float  # on the emulator's clock (monotonic)


@dataclass
class SignInAnswer:
    status: int
    body: dict


class SignInService:
    """Answers the authority's endpoints and remembers the access tokens it issued (expiring by the clock)."""

    def __init__(self, base_url: str, clock: Clock | None = None):
        self.base_url = base_url.rstrip("/")
        # Where a browser is sent to sign in (emulators.microsoft.openid): the authority itself,
        # or the plain-HTTP sign-in pages when those run.
        self.authorization_base = self.base_url
        self.clock = clock or Clock()
        self._tokens: dict[str, IssuedToken] = {}
        self._lock = threading.Lock()

    def handles(self, path: str) -> bool:
        return path.startswith("/common/discovery/") or "/v2.0/.well-known/" in path or path.endswith("/oauth2/v2.0/token")

    def answer(self, method: str, path: str, query: dict[str, str], form: dict[str, str],
               tenant: MicrosoftTenant, token_lifetime: int, graph_audiences: tuple[str, ...]) -> SignInAnswer:
        segments = path.strip("/").split("/")
        if path.startswith("/common/discovery/instance"):
            return SignInAnswer(200, self._instance_discovery(tenant))
        tenant_name = segments[0]
        if not _is_tenant(tenant, tenant_name):
            return self._error(400, "invalid_tenant", 90002,
                               f"Tenant '{tenant_name}' not found. Check to make sure you have the correct tenant ID and are "
                               "signing into the correct cloud. Check with your subscription administrator, this may happen "
                               "if there are no active subscriptions for the tenant.")
        if path.endswith("/.well-known/openid-configuration") and method == "GET":
            return SignInAnswer(200, self._openid_configuration(tenant))
        if path.endswith("/oauth2/v2.0/token") and method == "POST":
            return self._token(form, tenant, token_lifetime, graph_audiences, f"{self.base_url}/{tenant_name}/oauth2/v2.0/token")
        return SignInAnswer(404, {"error": "not_found", "error_description": f"{method} {path} is not an endpoint of the authority"})

    # -- documents -------------------------------------------------------------------------

    def _openid_configuration(self, tenant: MicrosoftTenant) -> dict:
        base = f"{self.base_url}/{tenant.tenant_id}"
        return {
            "token_endpoint": f"{base}/oauth2/v2.0/token",
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
            "jwks_uri": f"{self.base_url}/{tenant.tenant_id}/discovery/v2.0/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": f"{base}/v2.0",
            "request_uri_parameter_supported": False,
            "userinfo_endpoint": f"{self.base_url}/oidc/userinfo",
            "authorization_endpoint": f"{self.authorization_base}/{tenant.tenant_id}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
            "http_logout_supported": True,
            "frontchannel_logout_supported": True,
            "end_session_endpoint": f"{base}/oauth2/v2.0/logout",
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "tid", "oid", "roles"],
            "kerberos_endpoint": f"{base}/kerberos",
            "tenant_region_scope": "NA",
            "cloud_instance_name": "microsoftonline.com",
            "cloud_graph_host_name": "graph.windows.net",
            "msgraph_host": "graph.microsoft.com",
            "rbac_url": "https://pas.windows.net",
        }

    def _instance_discovery(self, tenant: MicrosoftTenant) -> dict:
        host = self.base_url.split("://", 1)[1]
        return {
            "tenant_discovery_endpoint": f"{self.base_url}/{tenant.tenant_id}/v2.0/.well-known/openid-configuration",
            "api-version": "1.1",
            "metadata": [{"preferred_network": host, "preferred_cache": host, "aliases": [host]}],
        }

    # -- the token endpoint ----------------------------------------------------------------

    def _token(self, form: dict[str, str], tenant: MicrosoftTenant, lifetime: int,
               graph_audiences: tuple[str, ...], token_endpoint: str) -> SignInAnswer:
        if form.get("grant_type") != "client_credentials":
            return self._error(400, "unsupported_grant_type", 70003,
                               f"The app requested an unsupported grant type '{form.get('grant_type')}'.")
        client_id = form.get("client_id", "")
        registration = tenant.registration_for(client_id)
        if registration is None:
            return self._error(400, "unauthorized_client", 700016,
                               f"Application with identifier '{client_id}' was not found in the directory "
                               f"'{tenant.display_name}'. This can happen if the application has not been installed by the "
                               "administrator of the tenant or consented to by any user in the tenant. You may have sent "
                               "your authentication request to the wrong tenant.")
        if "client_secret" in form:
            if registration.client_secret is None or not secrets.compare_digest(form["client_secret"], registration.client_secret):
                return self._error(401, "invalid_client", 7000215,
                                   "Invalid client secret provided. Ensure the secret being sent in the request is the client "
                                   f"secret value, not the client secret ID, for a secret added to app '{client_id}'.")
            if registration.secret_expired:
                return self._error(401, "invalid_client", 7000222,
                                   f"The provided client secret keys for app '{client_id}' are expired. Visit the Azure portal "
                                   "to create new keys for your app: https://aka.ms/NewClientSecret, or consider using "
                                   "certificate credentials for added security: https://aka.ms/certCreds.")
        elif form.get("client_assertion_type") == ASSERTION_TYPE and form.get("client_assertion"):
            problem = _check_assertion(form["client_assertion"], registration.certificate_pem, client_id, token_endpoint)
            if problem:
                return self._error(401, "invalid_client", 700027, problem)
        else:
            return self._error(400, "invalid_client", 7000218,
                               "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.")
        scope = form.get("scope", "")
        resource = scope[: -len("/.default")] if scope.endswith("/.default") else None
        if resource is None or resource.rstrip("/") not in graph_audiences:
            return self._error(400, "invalid_resource", 500011,
                               f"The resource principal named {resource or scope} was not found in the tenant named "
                               f"{tenant.display_name}. This can happen if the application has not been installed by the "
                               "administrator of the tenant or consented to by any user in the tenant.")
        token = "emu." + secrets.token_urlsafe(32)
        with self._lock:
            now = self.clock.monotonic()
            self._tokens = {t: issued for t, issued in self._tokens.items() if issued.expires_at > now}
            roles = registration.roles if registration.roles is not None else tenant.granted_permissions(client_id)
            self._tokens[token] = IssuedToken(client_id, frozenset(roles), now + lifetime)
        return SignInAnswer(200, {"token_type": "Bearer", "expires_in": lifetime, "ext_expires_in": lifetime, "access_token": token})

    def check(self, authorization: str | None) -> tuple[IssuedToken | None, str]:
        """The token behind an Authorization header, or None and Graph's 401 message."""
        if not authorization or not authorization.lower().startswith("bearer ") or not authorization[7:].strip():
            return None, "Access token is empty."
        with self._lock:
            issued = self._tokens.get(authorization[7:].strip())
        if issued is None:
            return None, "CompactToken parsing failed with error code: 80049217"
        if issued.expires_at <= self.clock.monotonic():
            return None, "Access token has expired or is not yet valid."
        return issued, ""

    def expire_all_tokens(self) -> None:
        """Make every issued token expired now (tests of renewal)."""
        with self._lock:
            for issued in self._tokens.values():
                issued.expires_at = 0.0

    def _error(self, status: int, error: str, code: int, message: str) -> SignInAnswer:
        trace, correlation = str(uuid.uuid4()), str(uuid.uuid4())
        stamp = self.clock.now().strftime("%Y-%m-%d %H:%M:%SZ")
        return SignInAnswer(status, {
            "error": error,
            "error_description": f"AADSTS{code}: {message} Trace ID: {trace} Correlation ID: {correlation} Timestamp: {stamp}",
            "error_codes": [code], "timestamp": stamp, "trace_id": trace, "correlation_id": correlation,
            "error_uri": f"{self.base_url}/error?code={code}",
        })


def _is_tenant(tenant: MicrosoftTenant, name: str) -> bool:
    return name.lower() == tenant.tenant_id.lower() or name.lower() in {d.lower() for d in tenant.domains}


def _check_assertion(assertion: str, certificate_pem: str | None, client_id: str, audience: str) -> str | None:
    """Why a client assertion is refused, or None when it is good."""
    if not certificate_pem:
        return "Client assertion contains an invalid signature. [Reason - The key was not found.]"
    certificate = x509.load_pem_x509_certificate(certificate_pem.encode())
    der = certificate.public_bytes(serialization.Encoding.DER)
    expected = {
        "x5t": base64.urlsafe_b64encode(hashlib.sha1(der).digest()).decode().rstrip("="),
        "x5t#S256": base64.urlsafe_b64encode(certificate.fingerprint(hashes.SHA256())).decode().rstrip("="),
    }
    try:
        header = jwt.get_unverified_header(assertion)
    except jwt.InvalidTokenError:
        return "Client assertion is not a well-formed JWT."
    if not any(header.get(name, "").rstrip("=") == value for name, value in expected.items()):
        used = header.get("x5t") or header.get("x5t#S256") or "none"
        return f"Client assertion contains an invalid signature. [Reason - The key was not found., Thumbprint of key used by client: '{used}']"
    try:
        claims = jwt.decode(assertion, certificate.public_key(), algorithms=["RS256", "PS256"], audience=audience)
    except jwt.InvalidTokenError as error:
        return f"Client assertion failed signature validation. [Reason - {error}]"
    if claims.get("iss") != client_id or claims.get("sub") != client_id:
        return "The client assertion's issuer and subject must be the application's client id."
    return None
