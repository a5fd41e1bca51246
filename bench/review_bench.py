"""Time the review queue and one decision on a large inventory, through the real Datasette.

    app-inventory --db /tmp/bench/district.db demo --users 60000 --no-serve
    python bench/review_bench.py /tmp/bench/district.db

Works on a copy of the inventory (the original is unchanged). Signs in as IT through the
real form (a password account made for the run), then times: the review queue page
(/-/review) and the review_queue view's JSON, each the median of five; one product's
decision page; and one decision (the POST that records it: the catalog entry, its
history, matching, unapproved_usage, the products and the alert queue, in one
transaction), for the product with the most people in the queue.

Not a test: nothing here is asserted; the figures are in docs/review.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from plugins.signin.passwords import hash_password  # noqa: E402
from scanner.config import load_config  # noqa: E402
from scanner.serve import build_datasette  # noqa: E402

USERNAME, PASSWORD, VARIABLE = "bench_it", "a long bench password, not a secret", "APP_INVENTORY_BENCH_HASH"


async def timed(label: str, call, repeat: int = 1):
    seconds, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = await call()
        seconds.append(time.perf_counter() - start)
    shown = f"{statistics.median(seconds) * 1000:8.0f} ms" + (f" (median of {repeat})" if repeat > 1 else "")
    print(f"  {label:<58} {shown}", flush=True)
    return result


async def run(db_path: Path, workdir: Path) -> None:
    os.environ[VARIABLE] = hash_password(PASSWORD, iterations=1000)
    config_path = workdir / "bench.toml"
    config_path.write_text(f'[serve]\npublic = true\n[signin]\npassword_accounts = {{ {USERNAME} = "{VARIABLE}" }}\n',
                           encoding="utf-8")
    datasette = build_datasette(db_path, load_config(config_path))
    await datasette.invoke_startup()
    client = datasette.client
    form = await client.get("/-/login")
    token = re.search(r'name="csrftoken" value="([^"]+)"', form.text).group(1)
    csrf = form.cookies["ds_csrftoken"]
    login = await client.post("/-/login", data={"username": USERNAME, "password": PASSWORD, "csrftoken": token},
                              cookies={"ds_csrftoken": csrf})
    cookies = {"ds_actor": login.cookies["ds_actor"], "ds_csrftoken": csrf}
    db = datasette.get_database("inventory")
    accounts = (await db.execute("select count(*) from users")).single_value()
    grants = (await db.execute("select count(*) from grants where revoked_at is null")).single_value()
    print(f"{accounts:,} accounts, {grants:,} active grants")

    page = await timed("review queue page /-/review", lambda: client.get("/-/review", cookies=cookies), repeat=5)
    assert page.status_code == 200, page.status_code
    queue = await timed("review_queue.json (the view, every row)",
                        lambda: client.get("/inventory/review_queue.json?_shape=array&_size=max", cookies=cookies), repeat=5)
    rows = queue.json()
    print(f"  ({len(rows)} products in the queue)")
    top = max(rows, key=lambda row: row["people"])
    path = f"/-/review/decide?product={quote(top['product_id'], safe='')}"
    form = await timed(f"decision page for {top['name']} ({top['people']:,} people)", lambda: client.get(path, cookies=cookies))
    token = re.search(r'name="csrftoken" value="([^"]+)"', form.text).group(1)
    scopes = re.findall(r'name="approved_scopes" value="([^"]+)" checked', form.text)
    before = (await db.execute("select count(*) from unapproved_usage")).single_value()
    answer = await timed("one decision (POST: catalog, history, matching, usage, alerts)", lambda: client.post(
        "/-/review/decide", cookies=cookies, data={
            "csrftoken": token, "product": top["product_id"], "status": "approved", "audience": "all",
            "approved_scopes": scopes, "dpa_url": "", "dpa_expires": "", "alternative": "", "notes": "bench"}))
    assert answer.status_code == 302, answer.text[:500]
    after = (await db.execute("select count(*) from unapproved_usage")).single_value()
    print(f"  unapproved_usage rows: {before:,} -> {after:,}")
    await timed("review queue page after the decision", lambda: client.get("/-/review", cookies=cookies))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("db", help="an inventory (e.g. made by `app-inventory demo --users 60000 --no-serve`)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        workdir = Path(directory)
        copy = workdir / "inventory.db"
        shutil.copyfile(args.db, copy)
        asyncio.run(run(copy, workdir))


if __name__ == "__main__":
    main()
