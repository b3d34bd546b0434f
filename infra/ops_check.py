"""Operational coverage of infra/template.json, checked by `make lint`.

Every function must be traced (X-Ray) and have an errors alarm and a throttles alarm;
every scheduled function must send failed runs to a failure destination that an alarm
watches; every queue a function consumes must have an age alarm; the HTTP API must have
a 5xx alarm; and the dashboard must show every function. Adding a function, queue or
schedule without these fails lint, with the reason.

Usage: ops_check.py TEMPLATE        check the template (exit 1 with the gaps listed)
       ops_check.py --teeth TEMPLATE  also prove that broken copies are rejected
"""
import copy
import json
import sys


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
    apis = [k for k, v in res.items() if v.get("Type") == "AWS::Serverless::HttpApi"]
    for api in apis:
        if not alarms_on(res, "AWS/ApiGateway", "5xx", "ApiId", {"Ref": api}):
            problems.append(f"{api}: no alarm on 5xx")
    return problems


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

        mutants = {
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
        print(f"ops-check: OK — {fns} functions traced, alarmed and on the dashboard; "
              f"{len(mutants)}/{len(mutants)} broken copies rejected")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
