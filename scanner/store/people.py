"""People: accounts that share an address are one person (docs/people-and-products.md).

The scan's writer calls track_people_changes() before it writes, and refresh_people()
after: only the people whose accounts were added, removed or changed are regrouped and
rebuilt, in SQL (temp tables on the scan's connection, inside its transaction).
"""

from __future__ import annotations

from typing import NamedTuple

from sqlite_utils import Database

from ..schema import PERSON_ADDRESSES, PERSON_EMAIL, PERSON_NAME
from .temp import temp_table


class PeopleRefresh(NamedTuple):
    """What refresh_people did: how many accounts changed person, and whether it regrouped
    everyone (else temp._people_affected lists the people it rebuilt, before and after)."""

    changed: int
    everyone: bool


def track_people_changes(db: Database) -> None:
    """From now on, on this connection, note the accounts added, removed, or whose address,
    aliases, name, role or suspension changed, so refresh_people rebuilds only their people.
    The scan's writer calls it before writing; temp triggers, so other connections (and
    Datasette) never see them, and a rolled-back scan leaves no note behind. The first note
    of an account is kept with `where not exists`, not `or ignore`: a trigger takes the
    conflict handling of the statement that fired it, and the users upsert's would fail."""
    db.execute("create temp table if not exists _people_dirty (user_id text primary key, person_id text) without rowid")
    db.execute("delete from temp._people_dirty")
    db.execute(
        """create temp trigger if not exists _people_account_added after insert on users
           begin insert into _people_dirty (user_id, person_id) select new.id, null
                 where not exists (select 1 from _people_dirty where user_id = new.id); end"""
    )
    db.execute(
        """create temp trigger if not exists _people_account_removed after delete on users
           begin insert into _people_dirty (user_id, person_id) select old.id, old.person_id
                 where not exists (select 1 from _people_dirty where user_id = old.id); end"""
    )
    db.execute(
        """create temp trigger if not exists _people_account_changed after update of email, aliases, name, role, suspended on users
           when old.email is not new.email or old.aliases is not new.aliases or old.name is not new.name
             or old.role is not new.role or old.suspended is not new.suspended
           begin insert into _people_dirty (user_id, person_id) select old.id, old.person_id
                 where not exists (select 1 from _people_dirty where user_id = old.id); end"""
    )


def refresh_people(db: Database, *, full: bool = False) -> PeopleRefresh:
    """Group accounts into people: accounts that share an address (primary or alias, compared
    case-insensitively), directly or through other accounts, are one person, whatever
    provider reports them. Sets users.person_id (the lowest account id of the person) and
    brings `people` up to date.

    Only the people of accounts noted by track_people_changes are regrouped and rebuilt
    (nothing at all when no account changed); everyone is with full=True, when nothing was
    tracked on this connection, or when a large share of the accounts changed (a first scan).
    All in SQL: each round gives every account that shares an address
    the lowest person id among the accounts it shares one with, until a round changes nothing."""
    temp_table(db, "_people_affected", "person_id text primary key", rowid=False)
    tracked = db.execute("select 1 from temp.sqlite_master where name = '_people_dirty'").fetchone() is not None
    full = full or not tracked or not db.execute("select 1 from person_rows limit 1").fetchone()
    if not full:
        dirty = db.execute("select count(*) from temp._people_dirty").fetchone()[0]
        if not dirty:
            return PeopleRefresh(0, everyone=False)
        full = dirty * 10 > db.execute("select count(*) from users").fetchone()[0]
    temp_table(db, "_addresses", "user_id text not null, address text not null")
    temp_table(db, "_regrouped", "user_id text primary key", rowid=False)
    temp_table(db, "_links", "address text not null, user_id text not null, primary key (address, user_id)", rowid=False)
    temp_table(db, "_shared", "user_id text primary key, person_id text not null", rowid=False)
    temp_table(db, "_person_changed", "user_id text primary key, person_id text not null, old_person_id text", rowid=False)
    db.execute("drop index if exists temp._addresses_by_address")
    db.execute(
        """insert into temp._addresses (user_id, address)
           select id, lower(trim(email)) from users where trim(coalesce(email, '')) != ''
           union all
           select users.id, lower(trim(alias.value)) from users, json_each(users.aliases) as alias
           where users.aliases is not null and alias.type = 'text' and trim(alias.value) != ''"""
    )
    db.execute("create index temp._addresses_by_address on _addresses (address, user_id)")
    if full:
        db.execute("insert into temp._regrouped (user_id) select id from users")
    else:
        # Whom a change can move: every account of the changed accounts' people as they were,
        # and of the people whose accounts share an address with a changed account now. (Any
        # other account shares no address with these, or it would be one of their people.)
        temp_table(db, "_changed_addresses", "address text primary key", rowid=False)
        temp_table(db, "_regrouped_people", "person_id text primary key", rowid=False)
        db.execute(
            """insert or ignore into temp._changed_addresses (address)
               select address from temp._addresses where user_id in (select user_id from temp._people_dirty)"""
        )
        db.execute(
            """insert or ignore into temp._regrouped_people (person_id)
               select person_id from temp._people_dirty where person_id is not null
               union
               select theirs.person_id from temp._changed_addresses as changed
                 cross join temp._addresses as link on link.address = changed.address
                 cross join users as theirs on theirs.id = link.user_id
               where theirs.person_id is not null"""
        )
        db.execute(
            """insert or ignore into temp._regrouped (user_id)
               select user_id from temp._people_dirty where user_id in (select id from users)
               union
               select users.id from temp._regrouped_people as regrouped
                 cross join users on users.person_id = regrouped.person_id"""
        )
    # Only accounts that share an address with another can belong to someone else: the rounds
    # run over those links alone.
    temp_table(db, "_shared_addresses", "address text primary key", rowid=False)
    db.execute(
        """insert into temp._shared_addresses (address)
           select address from temp._addresses group by address having min(user_id) != max(user_id)"""
    )
    db.execute(
        """insert or ignore into temp._links (address, user_id)
           select link.address, link.user_id
           from temp._shared_addresses as shared
             cross join temp._addresses as link on link.address = shared.address
             cross join temp._regrouped as regrouped on regrouped.user_id = link.user_id"""
    )
    db.execute("insert or ignore into temp._shared (user_id, person_id) select user_id, user_id from temp._links")
    while db.execute(
        """update temp._shared set person_id = lowest.person_id
           from (
             select mine.user_id, min(theirs.person_id) as person_id
             from temp._links as mine
               join temp._links as other on other.address = mine.address
               join temp._shared as theirs on theirs.user_id = other.user_id
             group by mine.user_id
           ) as lowest
           where _shared.user_id = lowest.user_id and lowest.person_id < _shared.person_id"""
    ).rowcount:
        pass
    db.execute(
        """insert into temp._person_changed (user_id, person_id, old_person_id)
           select users.id, coalesce(shared.person_id, users.id), users.person_id
           from temp._regrouped as regrouped
             cross join users on users.id = regrouped.user_id
             left join temp._shared as shared on shared.user_id = users.id
           where users.person_id is not coalesce(shared.person_id, users.id)"""
    )
    changed = db.execute("select count(*) from temp._person_changed").fetchone()[0]
    if changed:
        db.execute("update users set person_id = c.person_id from temp._person_changed as c where users.id = c.user_id")
    if full:
        db.execute("delete from person_rows")
        db.execute(f"insert into person_rows ({', '.join(PEOPLE_COLUMNS)}) {people_rows('')}")
    else:
        db.execute(
            """insert or ignore into temp._people_affected (person_id)
               select person_id from temp._person_changed union select old_person_id from temp._person_changed
               union select person_id from temp._people_dirty"""
        )
        db.execute("delete from person_rows where id in (select person_id from temp._people_affected)")
        db.execute(
            f"insert into person_rows ({', '.join(PEOPLE_COLUMNS)}) "
            f"{people_rows('where users.person_id in (select person_id from temp._people_affected)')}"
        )
    if tracked:
        db.execute("delete from temp._people_dirty")
    return PeopleRefresh(changed, everyone=full)


PEOPLE_COLUMNS = ("id", "email", "name", "role", "accounts", "providers", "account_ids", "addresses", "suspended")


def people_rows(where: str) -> str:
    """SQL for the `person_rows` of the accounts `where` selects (docs/people-and-products.md has the rules).

    Role: student when any of the person's accounts is a student's, else staff when any is
    staff's, else unknown. Primary address (the `To:` of their alert): the `email` of their
    first account in this order: active before suspended, student then staff then unknown
    (so an account of the person's own role comes first), then the lowest account id. That
    first account is the least of a sort key, found in the same pass as the rest."""
    return f"""
    with persons as (
      select users.person_id,
        case when max(users.role = 'student') then 'student' when max(users.role = 'staff') then 'staff' else 'unknown' end as role,
        count(*) as accounts, group_concat(distinct users.provider) as providers,
        min(coalesce(users.suspended, 0)) as suspended, max(users.name) as any_name,
        min(coalesce(users.suspended, 0) || case users.role when 'student' then 0 when 'staff' then 1 else 2 end || users.id)
          as first_account
      from users indexed by idx_users_person_id {where}
      group by users.person_id
    )
    select persons.person_id, nullif(first.email, {PERSON_EMAIL.format(id="persons.person_id")}),
      nullif(coalesce(nullif(first.name, ''), persons.any_name, ''), {PERSON_NAME.format(id="persons.person_id")}), persons.role,
      persons.accounts, persons.providers,
      case when persons.accounts > 1 then (
        select json_group_array(id) from (select mine.id from users as mine where mine.person_id = persons.person_id order by mine.id))
      end,
      nullif((select json_group_array(address) from (
         select distinct lower(trim(mine.email)) as address from users as mine
         where mine.person_id = persons.person_id and trim(coalesce(mine.email, '')) != ''
         union
         select lower(trim(alias.value)) from users as mine, json_each(mine.aliases) as alias
         where mine.person_id = persons.person_id and mine.aliases is not null and alias.type = 'text'
           and trim(alias.value) != ''
         order by 1)), {PERSON_ADDRESSES.format(row="first")}),
      persons.suspended
    from persons join users as first on first.id = substr(persons.first_account, 3)
    """
