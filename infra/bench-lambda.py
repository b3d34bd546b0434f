#!/usr/bin/env python3
"""`make bench-lambda` (issue #13): init time and size of each Lambda artifact.

1. Init time: from spawning the artifact to its first request to the Lambda Runtime API
   (`GET /2018-06-01/runtime/invocation/next`), against a local stand-in of that API,
   with the environment the template gives the function (parameters at their defaults,
   resources as plausible names and ARNs). Median of INIT_RUNS cold starts (default 15)
   after one unmeasured start (page cache warm, as on a Lambda host). Nothing is answered:
   this is what the function does before it can take its first event. Target <= 15 ms.
2. Size of the stripped artifact. Target <= 8 MB.

The artifacts are `make build`'s (`ARCH=x86_64 make build` on this machine):
LAMBDA_DIR/<function>/bootstrap, default <repo>/target/lambda. Standard library only, so
the bench compiles nothing. Exits 1 when no artifact is found or one fails to start.
"""

import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

FUNCTIONS = [
    ("ingest", "IngestFunction"),
    ("rollup", "RollupFunction"),
    ("api", "ApiFunction"),
    ("notify", "NotifyFunction"),
    ("score", "ScoreFunction"),
    ("audit", "AuditFunction"),
    ("web", "WebFunction"),
]
TARGET_MS = 15.0
TARGET_BYTES = 8 * 1000 * 1000
NEXT = "GET /2018-06-01/runtime/invocation/next"
ROOT = Path(__file__).resolve().parent.parent


def resolve(template, value):
    """What a template value stands for here."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and "Ref" in value:
        name = value["Ref"]
        param = template.get("Parameters", {}).get(name)
        if param is not None:
            default = param.get("Default", "")
            return default if isinstance(default, str) else json.dumps(default)
        kind = template["Resources"].get(name, {}).get("Type", "")
        if kind == "AWS::SQS::Queue":
            return f"https://sqs.us-east-1.amazonaws.com/123456789012/{name}"
        if kind == "AWS::SNS::Topic":
            return f"arn:aws:sns:us-east-1:123456789012:{name}"
        if kind == "AWS::SecretsManager::Secret":
            return f"arn:aws:secretsmanager:us-east-1:123456789012:secret:{name}-AbCdEf"
        return f"bench-{name}"
    # Fn::Sub and the like (the web session secret): a long opaque string.
    return "bench-0123456789abcdef0123456789abcdef0123456789abcdef"


def environment(template, resource):
    variables = (
        template["Resources"][resource]["Properties"]
        .get("Environment", {})
        .get("Variables", {})
    )
    env = {k: resolve(template, v) for k, v in variables.items()}
    env.update(
        {
            "PATH": "/usr/bin:/bin",
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "AKIDBENCH",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_SESSION_TOKEN": "bench",
            "AWS_LAMBDA_FUNCTION_NAME": resource,
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
            "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/bench",
            "AWS_LAMBDA_LOG_STREAM_NAME": "bench",
            "AWS_LAMBDA_LOG_FORMAT": "JSON",
            "AWS_LAMBDA_LOG_LEVEL": "INFO",
        }
    )
    return env


def init_once(binary, env):
    """Milliseconds from spawn to the first Runtime API request."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(10)
    got = {}

    def accept():
        try:
            conn, _ = server.accept()
        except OSError:
            return
        head = b""
        conn.settimeout(10)
        while b"\r\n\r\n" not in head:
            try:
                chunk = conn.recv(512)
            except OSError:
                break
            if not chunk:
                break
            head += chunk
            if "at" not in got:
                got["at"] = time.perf_counter()
        got["line"] = head.split(b"\r\n", 1)[0].decode("latin-1")
        conn.close()

    waiter = threading.Thread(target=accept)
    waiter.start()
    port = server.getsockname()[1]
    started = time.perf_counter()
    child = subprocess.Popen(
        [str(binary)],
        env={**env, "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{port}"},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    waiter.join(12)
    child.kill()
    child.wait()
    server.close()
    if "at" not in got:
        raise RuntimeError("no Runtime API request within 10 s (did it exit at init?)")
    if not got.get("line", "").startswith(NEXT):
        raise RuntimeError(f"first request was {got.get('line')!r}, not {NEXT}")
    return (got["at"] - started) * 1000.0


def main():
    runs = max(1, int(os.environ.get("INIT_RUNS", "15")))
    directory = Path(os.environ.get("LAMBDA_DIR", ROOT / "target" / "lambda"))
    template = json.loads((ROOT / "infra" / "template.json").read_text())
    print(
        f"Lambda artifacts in {directory}: init = median of {runs} cold starts to the first "
        f"Runtime API request (target <= {TARGET_MS:g} ms); size stripped (target <= 8 MB)"
    )
    print(f"{'function':<8} {'init p50':>9} {'min':>8} {'max':>8} {'bytes':>11}  verdict")
    found, failed = 0, 0
    for function, resource in FUNCTIONS:
        binary = directory / function / "bootstrap"
        if not binary.is_file():
            print(f"{function:<8} missing {binary} (run `ARCH=x86_64 make build`)")
            continue
        found += 1
        env = environment(template, resource)
        size = binary.stat().st_size
        try:
            init_once(binary, env)
            times = [init_once(binary, env) for _ in range(runs)]
        except RuntimeError as e:
            failed += 1
            print(f"{function:<8} init failed: {e}")
            continue
        p50 = statistics.median(times)
        over = [w for w, bad in (("init", p50 > TARGET_MS), ("size", size > TARGET_BYTES)) if bad]
        verdict = "ok" if not over else " and ".join(over) + " over target"
        print(
            f"{function:<8} {p50:>7.1f}ms {min(times):>6.1f}ms {max(times):>6.1f}ms {size:>11}  {verdict}"
        )
    if found == 0:
        print(f"no artifact in {directory}: run `ARCH=x86_64 make build` first", file=sys.stderr)
        return 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
