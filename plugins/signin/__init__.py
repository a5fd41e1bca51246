"""District sign-in for IT staff, and the access log.

    settings.py          the [signin] section
    membership.py        who is IT staff: one function, re-applied at every request
    google_signin.py     Sign in with Google: OpenID Connect, the ID token verified with google-auth
    microsoft_signin.py  Sign in with Microsoft: MSAL's auth-code flow, the ID token verified with PyJWT
    sso.py               what both share: sign-ins under way (state, once, expiring), refusals
    passwords.py         PBKDF2 hashes (datasette-auth-passwords' format), checked off the event loop
    accesslog.py         the access log and the sessions, in a SQLite file of their own
    web/                 the Datasette side: /-/login, /-/sign-in/..., /-/logout, sessions, the
                         access log's pages

The core never imports this package: it gives `app-inventory serve` its Datasette plugin
through the `datasette_plugins` hook, and `app-inventory hash-password` through
`register_commands`.
"""

from __future__ import annotations

import json

import click

from scanner import hookimpl

from .passwords import MIN_PASSWORD_LENGTH, hash_password
from .settings import SETTINGS, USERNAME, check_settings, hash_variable_for


@hookimpl
def register_config_sections(register):
    """The [signin] section: Google and Microsoft sign-in, who is IT staff, password accounts,
    sessions, lockout, the access log's file."""
    register("signin", SETTINGS, check=check_settings)


@hookimpl
def datasette_plugins(register):
    """Sign-in, sessions and the access log for `app-inventory serve`."""
    from . import web  # imports Datasette: only when serving

    register(web, "app-inventory-signin")


@hookimpl
def register_commands(cli):
    """Add `app-inventory hash-password`."""
    cli.add_command(hash_password_command)


class BadPassword(click.ClickException):
    """One line and exit code 2, like every bad input."""

    exit_code = 2


@click.command(name="hash-password")
@click.option("--username", help="The IT account the password is for (prints its configuration lines).")
def hash_password_command(username):
    """Make the password hash for an IT account of `app-inventory serve`."""
    if username is not None and not USERNAME.match(username):
        raise BadPassword("--username may hold letters, digits and . _ @ - (up to 64 characters)")
    password = click.prompt("Password", hide_input=True, confirmation_prompt="Repeat the password", err=True)
    if len(password) < MIN_PASSWORD_LENGTH:
        raise BadPassword(f"use a password of at least {MIN_PASSWORD_LENGTH} characters (this account sees student data)")
    hashed = hash_password(password)
    variable = hash_variable_for(username)
    toml_key = username or "username"
    if not toml_key.replace("_", "").replace("-", "").isalnum():
        toml_key = json.dumps(toml_key)  # TOML bare keys cannot hold "." or "@"
    click.echo(hashed)
    # The instructions go to stderr, so `HASH=$(app-inventory hash-password)` captures only the hash.
    click.echo(
        "\nPut the hash in the environment of the account that runs `app-inventory serve`\n"
        "(single quotes keep the $ signs as they are):\n\n"
        f"    export {variable}='{hashed}'\n\n"
        "and name the variable in app-inventory.toml:\n\n"
        "    [signin]\n"
        f'    password_accounts = {{ {toml_key} = "{variable}" }}',
        err=True,
    )
