"""Operational coverage of infra/template.json, checked by `make lint`.

Every function must be traced (X-Ray) and have an errors alarm and a throttles alarm;
every scheduled function must send failed runs to a failure destination that an alarm
watches; every queue a function consumes must have an age alarm; the HTTP API must have
a 5xx alarm; and the dashboard must show every function. Every EMF metric the dashboard
shows (namespace `UsageIntel`, the code's default) must be one the code emits, for the
function that emits it (read from the `.count("…")`, `.put("…")`, `emit_duration("…")`
and `emit_alert(…, "…")` calls under functions/*/src), so a renamed metric cannot leave
an empty graph. Adding a function, queue or schedule without these fails lint, with the
reason.

Usage: ops_check.py TEMPLATE        check the template (exit 1 with the gaps listed)
       ops_check.py --teeth TEMPLATE  also prove that broken copies are rejected
"""
import copy
import json
import os
import re
import sys

# The code's default EMF namespace (shared/lambda/src/metrics.rs, DEFAULT_NAMESPACE).
NAMESPACE_SOURCE = "shared/lambda/src/metrics.rs"
# A metric name given to the EMF set: `s.count("EventsAccepted", n)`, `s.put(\n "RollupLag"`,
# `emit_duration("ScoreShardDuration", ..)`, `emit_alert(&alert, "AlertsPublished")`.
EMIT = re.compile(r'(?:\.count|\.put|emit_duration|emit_alert)\(\s*(?:&?\w+,\s*)?"([A-Z][A-Za-z0-9]*)"')
SEARCH = re.compile(r"SEARCH\('\{([^,}]+)[^}]*\}([^']*)'")


def emitted(root):
    """The code's EMF namespace and {metric: {function}} (the function is the crate's
    directory under functions/, the `Function` dimension it emits with)."""
    src = open(os.path.join(root, NAMESPACE_SOURCE)).read()
    ns = re.search(r'DEFAULT_NAMESPACE: &str = "([^"]+)"', src).group(1)
    out = {}
    fdir = os.path.join(root, "functions")
    for fn in sorted(os.listdir(fdir)):
        for base, _, files in os.walk(os.path.join(fdir, fn, "src")):
            for f in files:
                if f.endswith(".rs"):
                    for metric in EMIT.findall(open(os.path.join(base, f)).read()):
                        out.setdefault(metric, set()).add(fn)
    return ns, out


def dashboard_metrics(body):
    """(namespace, metric, function) of each metric a dashboard body shows: plain metric
    rows and SEARCH expressions alike."""
    text = body.get("Fn::Sub", body) if isinstance(body, dict) else body
    if isinstance(text, list):
        text = text[0]
    out = []
    for w in json.loads(text).get("widgets", []):
        for row in w.get("properties", {}).get("metrics", []):
            if row and isinstance(row[0], dict):
                m = SEARCH.search(row[0].get("expression", ""))
                if m:
                    terms = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2)))
                    out.append((m.group(1), terms.get("MetricName"), terms.get("Function")))
            elif len(row) >= 2 and isinstance(row[0], str):
                dims = [x for x in row[2:] if isinstance(x, str)]
                fn = dict(zip(dims[::2], dims[1::2])).get("Function")
                out.append((row[0], row[1], fn))
    return out


def alarms_on(res, namespace, metric, dimension, value):
    """Alarm ids watching `metric` with `dimension` == `value` (a Ref/GetAtt structure)."""
    out = []
    for rid, r in res.items():
        if r.get("Type") != "AWS::CloudWatch::Alarm":
            continue
        p = r.get("Properties", {})
        if p.get("Namespace") != namespace or p.get("MetricName") != metric:
            continue
        if not p.get("AlarmActions"):
            continue
        if any(d.get("Name") == dimension and d.get("Value") == value for d in p.get("Dimensions", [])):
            out.append(rid)
    return out


def gaps(t):
    res = t.get("Resources", {})
    fns = {k: v for k, v in res.items() if v.get("Type") == "AWS::Serverless::Function"}
    glob = t.get("Globals", {}).get("Function", {})
    problems = []
    dashboards = [r for r in res.values() if r.get("Type") == "AWS::CloudWatch::Dashboard"]
    body = json.dumps([d.get("Properties", {}).get("DashboardBody") for d in dashboards])
    if not dashboards:
        problems.append("the template has no CloudWatch dashboard")
    for fid, f in fns.items():
        p = f.get("Properties", {})
        if p.get("Tracing", glob.get("Tracing")) != "Active":
            problems.append(f"{fid}: X-Ray tracing is not Active (Globals.Function.Tracing or its own Tracing)")
        for metric in ("Errors", "Throttles"):
            if not alarms_on(res, "AWS/Lambda", metric, "FunctionName", {"Ref": fid}):
                problems.append(f"{fid}: no alarm on AWS/Lambda {metric}")
        if dashboards and "${%s}" % fid not in body:
            problems.append(f"{fid}: not on the dashboard")
        events = p.get("Events", {})
        schedules = [n for n, e in events.items() if e.get("Type") in ("Schedule", "ScheduleV2")]
        if schedules:
            dest = p.get("EventInvokeConfig", {}).get("DestinationConfig", {}).get("OnFailure", {}).get("Destination")
            if not dest:
                problems.append(f"{fid}: scheduled ({', '.join(schedules)}) but no EventInvokeConfig OnFailure destination")
            elif isinstance(dest, dict) and "Fn::GetAtt" in dest:
                q = dest["Fn::GetAtt"][0]
                if not alarms_on(res, "AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName",
                                 {"Fn::GetAtt": [q, "QueueName"]}):
                    problems.append(f"{fid}: failure destination {q} has no alarm on its depth")
            for n in schedules:
                if not events[n].get("Properties", {}).get("DeadLetterConfig"):
                    problems.append(f"{fid}: schedule {n} has no DeadLetterConfig (failed invocations would vanish)")
        for n, e in events.items():
            if e.get("Type") != "SQS":
                continue
            q = e.get("Properties", {}).get("Queue", {}).get("Fn::GetAtt", [None])[0]
            if q and not alarms_on(res, "AWS/SQS", "ApproximateAgeOfOldestMessage", "QueueName",
                                   {"Fn::GetAtt": [q, "QueueName"]}):
                problems.append(f"{fid}: consumes {q} but no alarm on its ApproximateAgeOfOldestMessage")
    ns, emits = emitted(ROOT)
    for d in dashboards:
        for namespace, metric, fn in dashboard_metrics(d.get("Properties", {}).get("DashboardBody", "{}")):
            if namespace.startswith("AWS/"):
                continue
            if namespace != ns:
                problems.append(f"dashboard: {namespace}/{metric}: the code emits to namespace {ns}")
            elif metric not in emits:
                problems.append(f"dashboard: {metric}: no function emits this EMF metric")
            elif fn not in emits[metric]:
                problems.append(f"dashboard: {metric} with Function={fn}: emitted by {sorted(emits[metric])}")
    apis = [k for k, v in res.items() if v.get("Type") == "AWS::Serverless::HttpApi"]
    for api in apis:
        if not alarms_on(res, "AWS/ApiGateway", "5xx", "ApiId", {"Ref": api}):
            problems.append(f"{api}: no alarm on 5xx")
    return problems


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main(argv):
    teeth = "--teeth" in argv
    path = [a for a in argv[1:] if a != "--teeth"][0]
    t = json.load(open(path))
    problems = gaps(t)
    if problems:
        print("ops-check: FAILED — operational gaps in %s:" % path, file=sys.stderr)
        for p in problems:
            print("  - " + p, file=sys.stderr)
        return 1
    if teeth:
        def drop(rid):
            return lambda m: m["Resources"].pop(rid)

        def untrace(m):
            m.pop("Globals", None)

        def no_destination(m):
            m["Resources"]["AuditFunction"]["Properties"].pop("EventInvokeConfig")

        def misspelt_metric(m):
            b = m["Resources"]["OpsDashboard"]["Properties"]["DashboardBody"]
            b["Fn::Sub"] = b["Fn::Sub"].replace('"RollupLag"', '"RollupLagMs"', 1)

        def wrong_function(m):
            b = m["Resources"]["OpsDashboard"]["Properties"]["DashboardBody"]
            b["Fn::Sub"] = b["Fn::Sub"].replace('Function=\\"notify\\"', 'Function=\\"score\\"', 1)

        mutants = {
            "dashboard-metric-misspelt": misspelt_metric,
            "dashboard-metric-of-another-function": wrong_function,
            "rollup-errors-alarm-removed": drop("RollupErrorsAlarm"),
            "tracing-removed": untrace,
            "audit-failure-destination-removed": no_destination,
            "events-age-alarm-removed": drop("EventsQueueAgeAlarm"),
            "dashboard-removed": drop("OpsDashboard"),
        }
        missed = [n for n, mutate in mutants.items() if not gaps((lambda m: (mutate(m), m)[1])(copy.deepcopy(t)))]
        if missed:
            print(f"ops-check: FAILED — broken copies accepted: {missed}", file=sys.stderr)
            return 1
        fns = sum(1 for v in t["Resources"].values() if v.get("Type") == "AWS::Serverless::Function")
        shown = [x for d in t["Resources"].values() if d.get("Type") == "AWS::CloudWatch::Dashboard"
                 for x in dashboard_metrics(d["Properties"]["DashboardBody"]) if not x[0].startswith("AWS/")]
        print(f"ops-check: OK — {fns} functions traced, alarmed and on the dashboard; "
              f"{len(set(shown))} EMF metrics on it, each one the code emits; "
              f"{len(mutants)}/{len(mutants)} broken copies rejected")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
