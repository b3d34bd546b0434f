"""The emulator's own ceiling (ADR 0008): DynamoDB writes/s that moto serves.

    infra/local/with-moto.sh .venv-moto/bin/python infra/local/moto-ceiling.py
    MOTO_PLAIN=1 infra/local/with-moto.sh .venv-moto/bin/python infra/local/moto-ceiling.py

Against AWS_ENDPOINT_URL: conditional PutItem sequentially and from 2/4/8/16 threads,
then 100-action TransactWriteItems (1 ADD per item, like a rollup part) while the table
grows, so the per-transaction cost of a large table shows. The client is Python
(boto3) on the same 2 cores, so the figures are a floor of what moto can serve.
"""

from __future__ import annotations

import argparse
import os
import threading
import time
import uuid
from typing import Any

import boto3
from botocore.config import Config


def client() -> Any:
    return boto3.client(
        "dynamodb",
        endpoint_url=os.environ["AWS_ENDPOINT_URL"],
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"max_attempts": 1}, max_pool_connections=64, read_timeout=600),
    )


def make_table(ddb: Any) -> str:
    name = f"ceiling-{uuid.uuid4().hex[:8]}"
    ddb.create_table(
        TableName=name,
        KeySchema=[
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    return name


def puts(table: str, threads: int, per_thread: int) -> float:
    def work(t: int) -> None:
        ddb = client()
        for i in range(per_thread):
            ddb.put_item(
                TableName=table,
                Item={"pk": {"S": f"p{t}-{i}-{uuid.uuid4().hex[:6]}"}, "sk": {"S": "x"}, "n": {"N": "1"}},
                ConditionExpression="attribute_not_exists(pk)",
            )

    start = time.perf_counter()
    ts = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return threads * per_thread / (time.perf_counter() - start)


def transactions(table: str, count: int, prefix: str, stored: int) -> None:
    """`count` transactions in steps of 10; prints the rate as the table grows."""
    ddb = client()
    for step in range(0, count, 10):
        start = time.perf_counter()
        for i in range(step, step + 10):
            ddb.transact_write_items(
                TransactItems=[
                    {
                        "Update": {
                            "TableName": table,
                            "Key": {"pk": {"S": f"{prefix}-{i}-{k}"}, "sk": {"S": "day"}},
                            "UpdateExpression": "ADD n :one",
                            "ExpressionAttributeValues": {":one": {"N": "1"}},
                        }
                    }
                    for k in range(100)
                ]
            )
        rate = 10 / (time.perf_counter() - start)
        print(
            f"TransactWriteItems x100 actions, table {stored + step * 100:>6} -> {stored + (step + 10) * 100:>6} items: "
            f"{rate:6.2f} tx/s = {rate * 100:7.0f} item writes/s",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--puts", type=int, default=2000, help="PutItems per run")
    parser.add_argument("--rounds", type=int, default=4, help="transaction rounds (table grows 10,000 items each)")
    parser.add_argument("--skip-puts", action="store_true")
    args = parser.parse_args()
    ddb = client()
    table = make_table(ddb)
    for threads in () if args.skip_puts else (1, 2, 4, 8, 16):
        rate = puts(table, threads, max(1, args.puts // threads))
        print(f"conditional PutItem, {threads:>2} thread(s): {rate:7.0f} writes/s", flush=True)
    tx_table = make_table(ddb)
    for r in range(args.rounds):
        transactions(tx_table, 100, f"r{r}", r * 10_000)


if __name__ == "__main__":
    main()
