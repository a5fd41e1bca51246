"""Graph objects -> inventory records, on the shapes Microsoft's documentation shows (no network)."""

from __future__ import annotations

from plugins.microsoft.records import (
    ServicePrincipal,
    application_grants,
    delegated_grant,
    last_used,
    ownership,
    service_principal_to_app,
    user_record,
)
from scanner.providers import Grant, LastUsed

DISTRICT = "5f1b7c3e-2a4d-4e8f-9b6a-1c2d3e4f5a6b"
ROLES = {"student_domains": ["students.district.org"], "student_license_skus": ["STANDARDWOFFPACK_STUDENT"],
         "student_groups": ["g-students"], "student_org_units": []}

# servicePrincipal, as in the v1.0 "Get servicePrincipal" example (a verified publisher).
VERIFIED_SP = {
    "accountEnabled": True, "appDisplayName": "My app", "appId": "appId-value",
    "appOwnerOrganizationId": "65415bb1-9267-4313-bbf5-ae259732ee12", "displayName": "My app instance in tenant",
    "homepage": None, "id": "00af5dfb-85da-4b41-a677-0c6b86dd34f8",
    "verifiedPublisher": {"displayName": "publisher_contoso", "verifiedPublisherId": "9999999", "addedDateTime": "2021-04-24T17:49:44Z"},
    "info": {"termsOfServiceUrl": None, "supportUrl": None, "privacyStatementUrl": None, "marketingUrl": None, "logoUrl": None},
    "publisherName": None, "servicePrincipalType": None, "signInAudience": "AzureADandPersonalMicrosoftAccount",
}
CLIENTS = {
    "263a5b01-03e5-408e-8557-bab681df104c": ServicePrincipal("263a5b01-03e5-408e-8557-bab681df104c", "app-1", "Quiz App", "third_party"),
    "85477313-ea43-4c7d-b8a4-54fed35d0b60": ServicePrincipal("85477313-ea43-4c7d-b8a4-54fed35d0b60", "app-2", "Notes App", "third_party"),
    "1804a6f8-e623-4520-8f40-ba1b0c11c42d": ServicePrincipal("1804a6f8-e623-4520-8f40-ba1b0c11c42d", "00000003-0000-0000-c000-000000000000", "Microsoft Graph", "first_party"),
}


def test_ownership_by_owner_tenant():
    assert ownership({"appOwnerOrganizationId": "f8cdef31-a31e-4b4a-93e4-5f571e91255a"}, DISTRICT) == "first_party"
    assert ownership({"appOwnerOrganizationId": "72F988BF-86F1-41AF-91AB-2D7CD011DB47"}, DISTRICT) == "first_party"
    assert ownership({"appOwnerOrganizationId": DISTRICT.upper()}, DISTRICT) == "internal"
    assert ownership({"appOwnerOrganizationId": None, "servicePrincipalType": "ManagedIdentity"}, DISTRICT) == "internal"
    assert ownership(VERIFIED_SP, DISTRICT) == "third_party"


def test_service_principal_to_app_with_verified_publisher():
    principal, app = service_principal_to_app(VERIFIED_SP, DISTRICT)
    assert principal == ServicePrincipal("00af5dfb-85da-4b41-a677-0c6b86dd34f8", "appId-value", "My app instance in tenant", "third_party")
    assert app.id == "appId-value" and app.name == "My app instance in tenant"
    assert app.verified_publisher == "publisher_contoso" and app.publisher == "publisher_contoso"
    assert app.details == {"servicePrincipalId": "00af5dfb-85da-4b41-a677-0c6b86dd34f8", "signInAudience": "AzureADandPersonalMicrosoftAccount",
                           "appOwnerOrganizationId": "65415bb1-9267-4313-bbf5-ae259732ee12", "accountEnabled": True,
                           "verifiedPublisherId": "9999999"}


def test_unverified_publisher_in_both_shapes():
    nulls = {**VERIFIED_SP, "publisherName": "Contoso", "verifiedPublisher": {"displayName": None, "verifiedPublisherId": None, "addedDateTime": None}}
    missing = {**VERIFIED_SP, "verifiedPublisher": None, "displayName": None, "homepage": None,
               "info": {"marketingUrl": "https://contoso.example/"}}
    assert service_principal_to_app(nulls, DISTRICT)[1].verified_publisher is None
    assert service_principal_to_app(nulls, DISTRICT)[1].publisher == "Contoso"
    app = service_principal_to_app(missing, DISTRICT)[1]
    assert app.verified_publisher is None and app.publisher == "" and app.name == "My app"
    assert app.homepage == "https://contoso.example/"


def test_all_principals_grant_is_tenant_wide():
    # The v1.0 "List oauth2PermissionGrants" example.
    grant = {"clientId": "263a5b01-03e5-408e-8557-bab681df104c", "consentType": "AllPrincipals",
             "id": "AVs6JuUDjkCFV7q2gd8QTPimBBgj5iBFj0C6GwwRxC0", "principalId": None,
             "resourceId": "1804a6f8-e623-4520-8f40-ba1b0c11c42d", "scope": "User.Read Group.ReadWrite.All"}
    assert delegated_grant(grant, CLIENTS) == Grant(user_id=None, app_id="app-1", scopes=["User.Read", "Group.ReadWrite.All"],
                                                    grant_type="delegated", resource="Microsoft Graph")


def test_principal_grant_with_stray_spaces_and_unknown_resource():
    # The "List a user's oauth2PermissionGrants" example: note the leading space in scope.
    grant = {"clientId": "85477313-ea43-4c7d-b8a4-54fed35d0b60", "consentType": "Principal",
             "id": "E3NHhUPqfUy4pFT-010LYFo5-ycA-_5Fhl7nHbaJ7qACy1R9o6oWQJ-cpLSUIt2b",
             "principalId": "7d54cb02-aaa3-4016-9f9c-a4b49422dd9b", "resourceId": "27fb395a-fb00-45fe-865e-e71db689eea0",
             "scope": " Contacts.ReadWrite openid profile"}
    record = delegated_grant(grant, CLIENTS)
    assert record.user_id == "7d54cb02-aaa3-4016-9f9c-a4b49422dd9b"
    assert record.scopes == ["Contacts.ReadWrite", "openid", "profile"]
    assert record.resource == "27fb395a-fb00-45fe-865e-e71db689eea0"  # a resource we do not know keeps its id
    assert delegated_grant({**grant, "clientId": "deleted"}, CLIENTS) is None
    assert delegated_grant({**grant, "principalId": None}, CLIENTS) is None


def test_application_grants_group_by_resource_and_keep_unknown_roles():
    # The v1.0 "List appRoleAssignments" example, plus a second resource and a retired role.
    client = CLIENTS["263a5b01-03e5-408e-8557-bab681df104c"]
    assignments = [
        {"appRoleId": "e2a3a72e-5f79-4c64-b1b1-878b674786c9", "principalId": client.id, "principalType": "ServicePrincipal",
         "resourceDisplayName": "Microsoft Graph", "resourceId": "1804a6f8-e623-4520-8f40-ba1b0c11c42d"},
        {"appRoleId": "deadbeef-0000-0000-0000-000000000000", "resourceId": "1804a6f8-e623-4520-8f40-ba1b0c11c42d"},
        {"appRoleId": "00000000-0000-0000-0000-000000000000", "resourceId": "other-api"},
    ]
    roles = {"1804a6f8-e623-4520-8f40-ba1b0c11c42d": {"e2a3a72e-5f79-4c64-b1b1-878b674786c9": "Mail.Read"}}
    grants = application_grants(client, assignments, roles, CLIENTS)
    assert grants == [
        Grant(user_id=None, app_id="app-1", scopes=["Mail.Read", "deadbeef-0000-0000-0000-000000000000"],
              grant_type="application", resource="Microsoft Graph"),
        Grant(user_id=None, app_id="app-1", scopes=["default access"], grant_type="application", resource="other-api"),
    ]


def test_user_roles_from_domain_licence_and_group():
    skus = {"314c4481-f395-4525-be8b-2ec4bb1e9d91": "STANDARDWOFFPACK_STUDENT", "94763226-9b3c-4e75-a931-5c89701abe66": "STANDARDWOFFPACK_FACULTY"}

    def user(**fields):
        base = {"id": "u1", "userPrincipalName": "pat@district.org", "mail": None, "displayName": "Pat",
                "department": "Lincoln Elementary", "accountEnabled": True, "assignedLicenses": []}
        return {**base, **fields}

    teacher = user_record(user(assignedLicenses=[{"skuId": "94763226-9b3c-4e75-a931-5c89701abe66", "disabledPlans": []}]), ROLES, skus, {})
    assert (teacher.role, teacher.email, teacher.org_unit, teacher.suspended) == ("staff", "pat@district.org", "Lincoln Elementary", False)
    licensed = user_record(user(assignedLicenses=[{"skuId": "314c4481-f395-4525-be8b-2ec4bb1e9d91"}]), ROLES, skus, {})
    assert licensed.role == "student"
    assert user_record(user(), ROLES, skus, {"u1": ["g-students"]}).role == "student"
    aliased = user_record(user(userPrincipalName="s123@district.org", mail="sam@students.district.org"), ROLES, skus, {})
    assert aliased.role == "student" and aliased.email == "sam@students.district.org"
    disabled = user_record(user(accountEnabled=False, department=None, officeLocation="Central High"), ROLES, skus, {})
    assert disabled.suspended and disabled.org_unit == "Central High"


def test_last_used_prefers_client_sign_ins_and_tolerates_odd_offsets():
    # The beta servicePrincipalSignInActivities example, with its malformed "-8:00" offsets.
    activity = {
        "appId": "83f45296-fb8f-4aaa-a399-ac51084e02b7",
        "applicationAuthenticationClientSignInActivity": {"lastSignInDateTime": "2021-03-01T00:00:00-8:00"},
        "applicationAuthenticationResourceSignInActivity": {"lastSignInDateTime": "2021-04-01T00:00:00-8:00"},
        "delegatedClientSignInActivity": {"lastSignInDateTime": "2021-01-01T00:00:00-8:00"},
        "delegatedResourceSignInActivity": {"lastSignInDateTime": "2021-02-01T00:00:00-8:00"},
        "lastSignInActivity": {"lastSignInDateTime": "2021-04-01T00:00:00Z"},
    }
    assert last_used(activity) == LastUsed(app_id="83f45296-fb8f-4aaa-a399-ac51084e02b7", at="2021-03-01T08:00:00Z")
    only_resource = {"appId": "a", "delegatedClientSignInActivity": {"lastSignInDateTime": None},
                     "lastSignInActivity": {"lastSignInDateTime": "2021-04-01T00:00:00Z"}}
    assert last_used(only_resource).at == "2021-04-01T00:00:00Z"
    assert last_used({"appId": "a", "lastSignInActivity": {"lastSignInDateTime": "yesterday"}}) is None
    assert last_used({"appId": "a"}) is None


def test_aliases_are_the_sign_in_name_and_smtp_proxy_addresses():
    # A Graph user with $select=...,proxyAddresses: "SMTP:" is the primary address, "smtp:"
    # the others; X500 and SIP entries are not mail addresses.
    user = {
        "id": "u9", "userPrincipalName": "zpark@district.onmicrosoft.example", "mail": "Zoe.Park@district.example",
        "displayName": "Zoe Park", "department": "Lincoln Elementary", "accountEnabled": True, "assignedLicenses": [],
        "proxyAddresses": [
            "SMTP:Zoe.Park@district.example", "smtp:zpark@district.example", "smtp:zoe.park@district.mail.onmicrosoft.example",
            "X500:/o=ExchangeLabs/ou=Exchange Administrative Group/cn=Recipients/cn=abc-Zoe", "SIP:zoe.park@district.example",
        ],
    }
    record = user_record(user, ROLES, {}, {})
    assert record.email == "Zoe.Park@district.example"
    assert record.aliases == [
        "zpark@district.onmicrosoft.example", "zpark@district.example", "zoe.park@district.mail.onmicrosoft.example",
    ]
    # No mail: the sign-in name is the primary address, and no alias of itself.
    bare = user_record({**user, "mail": None, "proxyAddresses": []}, ROLES, {}, {})
    assert (bare.email, bare.aliases) == ("zpark@district.onmicrosoft.example", [])
