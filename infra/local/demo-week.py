# A week of logins, 4 an hour for "north" and "south"; north stops 3 hours ago.
import datetime as d, json
hour = d.datetime.now(d.timezone.utc).replace(minute=0, second=0, microsecond=0)
for h in range(1, 7 * 24 + 1):
    for account in ("north", "south"):
        if account == "north" and h <= 3:
            continue
        for i in range(4):
            t = hour - d.timedelta(hours=h) + d.timedelta(minutes=15 * i)
            print(json.dumps({"id": f"{account}-{h}-{i}", "account": account, "meter": "legacy_logins",
                              "timestamp": t.strftime("%Y-%m-%dT%H:%M:%SZ")}))
