"""A trial-sized customer history for `usage-local import` (ADR 0008, README "Trial").

    python3 infra/local/trial-history.py events --accounts 1000 --days 90 > trial.jsonl
    python3 infra/local/trial-history.py profiles --accounts 1000 --base $B --key $KEY

`events` prints one JSON event per line (about 2.2 per account and day: api_calls and
seats_active daily, tickets now and then; every fourth account's usage falls over the
last 30 days). `profiles` PUTs each account's profile (name, segment, onboarding date)
so the score job has accounts to score. Deterministic for a given --seed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import sys
import urllib.request

SEGMENTS = ("smb", "smb", "mid_market", "enterprise")


def account_id(i: int) -> str:
    return f"trial-{i:05d}"


def events(accounts: int, days: int, seed: int) -> None:
    rng = random.Random(seed)
    today = dt.datetime.now(dt.timezone.utc).date()
    out = sys.stdout
    for i in range(accounts):
        acct = account_id(i)
        size = rng.uniform(0.5, 3.0)
        decaying = i % 4 == 1
        for back in range(days, 0, -1):
            day = today - dt.timedelta(days=back)
            level = size
            if decaying and back <= 30:
                level *= back / 30  # falls to almost nothing by yesterday
            stamp = f"{day}T{rng.randrange(24):02d}:{rng.randrange(60):02d}:00Z"
            records = [
                ("api_calls", max(0, round(rng.gauss(400 * level, 40 * level)))),
                ("seats_active", max(0, round(12 * level + rng.uniform(-1, 1)))),
            ]
            if rng.random() < 0.12:
                records.append(("tickets_opened", 1))
            if rng.random() < 0.10:
                records.append(("tickets_resolved", 1))
            for meter, qty in records:
                if qty <= 0:
                    continue
                out.write(
                    json.dumps(
                        {
                            "id": f"{acct}-{meter}-{day}",
                            "account": acct,
                            "meter": meter,
                            "quantity": qty,
                            "timestamp": stamp,
                        }
                    )
                    + "\n"
                )


def profiles(accounts: int, days: int, base: str, key: str) -> None:
    onboarded = dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=max(days, 120))
    for i in range(accounts):
        body = json.dumps(
            {
                "name": f"Trial customer {i}",
                "segment": SEGMENTS[i % len(SEGMENTS)],
                "onboarding_date": str(onboarded),
            }
        ).encode()
        req = urllib.request.Request(
            f"{base}/v1/accounts/{account_id(i)}",
            data=body,
            method="PUT",
            headers={"authorization": f"Bearer {key}", "content-type": "application/json"},
        )
        with urllib.request.urlopen(req) as resp:
            if resp.status >= 300:
                raise SystemExit(f"PUT {account_id(i)}: {resp.status}")
    print(f"{accounts} profiles written", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("what", choices=["events", "profiles"])
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--seed", type=int, default=16)
    parser.add_argument("--base", default="http://127.0.0.1:8080")
    parser.add_argument("--key", default="")
    args = parser.parse_args()
    if args.what == "events":
        events(args.accounts, args.days, args.seed)
    else:
        profiles(args.accounts, args.days, args.base, args.key)


if __name__ == "__main__":
    main()
