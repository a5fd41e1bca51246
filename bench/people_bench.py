"""Time the people and products work a scan adds, on an inventory that bench/scan_bench.py made.

    python bench/scan_bench.py --users 100000 --workdir /tmp/bench
    python bench/people_bench.py /tmp/bench/bench.db

Everything runs inside one transaction that is rolled back: the inventory is unchanged.
The cases, in order: everyone regrouped (a first scan, or an upgrade); nothing changed;
0.1% of the accounts renamed; 1% given an alias; 2% of the accounts authorized an app (a
weekly scan's churn). Then every Microsoft account gets its Google twin's address as an
alias (the district where everyone has both accounts), and the same cases again.

Not a test: nothing here is asserted; the figures are in docs/scale.md.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from scanner import store
from scanner.schema import CHANGE_KIND_CODES


def timed(label: str, step: Callable[[], object]) -> None:
    start = time.perf_counter()
    step()
    print(f"  {label:<62} {time.perf_counter() - start:6.2f} s", flush=True)


def weekly_churn(db, share: float) -> int:
    """A scan in which `share` of the accounts authorized an app: its change records."""
    scan_id = db["scans"].insert({"provider": "google", "mode": "full", "started_at": "bench", "status": "running"}).last_pk
    db.execute(
        f"""insert into change_rows (scan_id, kind, app_key, user_key, resource, application, detected_at)
           select ?, {CHANGE_KIND_CODES['new_grant']}, g.app_key, g.user_key, g.resource, g.application, 0
           from users join grant_rows as g on g.user_key = users.key
             and g.app_key = (select app_key from grant_rows where user_key = users.key limit 1)
           where abs(random()) % 10000 < ?""",
        [scan_id, int(share * 10000)],
    )
    return scan_id


def cases(db, title: str) -> None:
    print(title)
    timed("refresh_people, nothing changed", lambda: store.refresh_people(db))
    db.execute("update users set name = name || ' (renamed)' where abs(random()) % 1000 = 0")
    timed("refresh_people, 0.1% of the accounts renamed", lambda: store.refresh_people(db))
    db.execute("update users set aliases = json_array('alias.' || lower(email)) where abs(random()) % 100 = 0")
    timed("refresh_people, 1% of the accounts given an alias", lambda: store.refresh_people(db))
    scan_id = weekly_churn(db, 0.02)
    timed("refresh_people + refresh_products, 2% authorized an app",
          lambda: (store.refresh_people(db), store.refresh_products(db, after_scan=scan_id)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("db", help="an inventory made by bench/scan_bench.py (--workdir keeps it)")
    args = parser.parse_args()
    db = store.open_db(args.db)
    users, grants = db["users"].count, db.execute("select count(*) from grants where revoked_at is null").fetchone()[0]
    print(f"{users:,} accounts, {grants:,} active grants")
    db.conn.execute("begin")
    try:
        timed("refresh_people, everyone (a first scan)", lambda: store.refresh_people(db, full=True))
        timed("refresh_products, everyone", lambda: store.refresh_products(db))
        store.track_people_changes(db)
        cases(db, "Nobody has two accounts:")
        timed("every Microsoft account gets its Google twin's address", lambda: db.execute(
            """update users set aliases = json_array((select google.email from users as google
                 where google.provider = 'google' and google.rowid = users.rowid - (select count(*) from users as g
                   where g.provider = 'google')))
               where provider = 'microsoft'"""))
        timed("refresh_people, everyone merged at once (once)", lambda: store.refresh_people(db))
        timed("refresh_products, everyone", lambda: store.refresh_products(db))
        cases(db, "Everyone has a Google and a Microsoft account:")
    finally:
        db.conn.rollback()


if __name__ == "__main__":
    main()
