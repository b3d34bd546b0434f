#!/usr/bin/env python3
"""Converts the CDNOW transaction log (shipped in the `lifetimes` package on PyPI,
lifetimes/datasets/CDNOW_master.txt: 23,570 customers' CD purchases, 1997-01 to
1998-06) into the backtest's inputs:

  events.jsonl    one `cds_bought` event per purchase line (import format)
  accounts.jsonl  one SMB profile per customer, onboarded on the first purchase
  outcomes.csv    account,churned,churn_date: a customer churns LAPSE days after
                  their last purchase when that day is within the data; later
                  lapses are unknown (censored) and count as not churned
  health.json     the config the backtest scores with (purchases are rare: one
                  active day is enough to score)

Usage: cdnow.py CDNOW_master.txt OUT_DIR [LAPSE_DAYS=90]
"""
import csv
import datetime as dt
import json
import os
import sys


def main():
    src, out = sys.argv[1], sys.argv[2]
    lapse = int(sys.argv[3]) if len(sys.argv) > 3 else 90
    os.makedirs(out, exist_ok=True)
    first, last = {}, {}
    end = None
    with open(src) as f, open(os.path.join(out, "events.jsonl"), "w") as ev:
        for n, line in enumerate(f, 1):
            parts = line.split()
            if len(parts) != 4 or not parts[1].isdigit():
                continue
            cid, day, cds, _dollars = parts
            d = dt.datetime.strptime(day, "%Y%m%d").date()
            acct = f"cdnow-{int(cid):05d}"
            first[acct] = min(first.get(acct, d), d)
            last[acct] = max(last.get(acct, d), d)
            end = d if end is None else max(end, d)
            ev.write(json.dumps({
                "id": f"cdnow-{n}", "account": acct, "meter": "cds_bought",
                "quantity": int(cds), "timestamp": f"{d.isoformat()}T12:00:00Z",
            }) + "\n")
    with open(os.path.join(out, "accounts.jsonl"), "w") as ac:
        for acct in sorted(first):
            ac.write(json.dumps({
                "account": acct, "name": acct, "segment": "smb",
                "onboarding_date": first[acct].isoformat(),
            }) + "\n")
    churned = 0
    with open(os.path.join(out, "outcomes.csv"), "w", newline="") as oc:
        w = csv.writer(oc)
        w.writerow(["account", "churned", "churn_date"])
        for acct in sorted(last):
            c = last[acct] + dt.timedelta(days=lapse)
            if c <= end:
                churned += 1
                w.writerow([acct, "true", c.isoformat()])
            else:
                w.writerow([acct, "false", ""])
    with open(os.path.join(out, "health.json"), "w") as hc:
        json.dump({"min_active_days": 1, "min_account_age_days": 30}, hc)
    print(f"{len(first)} customers, {churned} churned ({lapse}-day lapse), data to {end}; wrote {out}")


if __name__ == "__main__":
    main()
