# 80 logins for "south" in the current hour (the first 20 sent twice: 20 duplicates).
import datetime as d, json, sys
now = d.datetime.now(d.timezone.utc)
hour = now.replace(minute=0, second=0, microsecond=0)
n = int(sys.argv[1]) if len(sys.argv) > 1 else 80
print(json.dumps([{"id": f"flood-{i}", "account": "south", "meter": "logins",
                   "timestamp": (hour + (now - hour) * i / n).strftime("%Y-%m-%dT%H:%M:%SZ")} for i in range(n)]))
