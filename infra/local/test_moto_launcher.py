"""TransactWriteItems on the launcher behaves as on plain moto (ADR 0008).

Each case runs against two servers started here: plain ``moto_server`` and
``moto_launcher.py``. Both must give the same answers (cancellation reasons, error codes,
final items, GSI queries); the launcher must also not replace tables on a rollback and
must stay consistent under concurrent transactions. Run by ``infra/local/test-moto.sh``.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
import uuid
from collections import Counter
from pathlib import Path
from typing import Any, Iterator

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import moto_launcher  # noqa: E402

SERVERS = {
    "plain moto": [str(Path(sys.executable).with_name("moto_server"))],
    "launcher": [sys.executable, str(HERE / "moto_launcher.py")],
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session", params=list(SERVERS))
def endpoint(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = _free_port()
    log = tmp_path_factory.mktemp("moto") / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            SERVERS[request.param] + ["-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(150):
            if proc.poll() is not None:
                pytest.fail(f"{request.param} exited at start:\n{log.read_text()}")
            try:
                urllib.request.urlopen(f"{url}/moto-api/")
                break
            except OSError:
                time.sleep(0.2)
        else:
            pytest.fail(f"{request.param} did not answer:\n{log.read_text()}")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def ddb(endpoint: str) -> Any:
    return boto3.client(
        "dynamodb",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"max_attempts": 1}, max_pool_connections=32),
    )


def _table(ddb: Any, *, with_range: bool = True) -> str:
    name = f"t-{uuid.uuid4().hex[:10]}"
    keys = [{"AttributeName": "pk", "KeyType": "HASH"}]
    attrs = [{"AttributeName": "pk", "AttributeType": "S"}]
    if with_range:
        keys.append({"AttributeName": "sk", "KeyType": "RANGE"})
        attrs.append({"AttributeName": "sk", "AttributeType": "S"})
    attrs.append({"AttributeName": "gpk", "AttributeType": "S"})
    ddb.create_table(
        TableName=name,
        KeySchema=keys,
        AttributeDefinitions=attrs,
        BillingMode="PAY_PER_REQUEST",
        GlobalSecondaryIndexes=[
            {
                "IndexName": "by-g",
                "KeySchema": [{"AttributeName": "gpk", "KeyType": "HASH"}],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
    )
    return name


def _key(table_has_range: bool, pk: str, sk: str = "x") -> dict[str, Any]:
    key = {"pk": {"S": pk}}
    if table_has_range:
        key["sk"] = {"S": sk}
    return key


def _everything(ddb: Any, *tables: str) -> dict[str, list[dict[str, Any]]]:
    out = {}
    for t in tables:
        items = ddb.scan(TableName=t, ConsistentRead=True)["Items"]
        out[t] = sorted(items, key=lambda i: (i["pk"]["S"], i.get("sk", {}).get("S", "")))
    return out


def _gsi(ddb: Any, table: str, gpk: str) -> list[str]:
    items = ddb.query(
        TableName=table,
        IndexName="by-g",
        KeyConditionExpression="gpk = :g",
        ExpressionAttributeValues={":g": {"S": gpk}},
    )["Items"]
    return sorted(i["pk"]["S"] for i in items)


def _cancel(ddb: Any, items: list[dict[str, Any]]) -> ClientError:
    with pytest.raises(ClientError) as raised:
        ddb.transact_write_items(TransactItems=items)
    return raised.value


def _seed(ddb: Any, table: str, with_range: bool) -> None:
    ddb.put_item(TableName=table, Item={**_key(with_range, "kept"), "n": {"N": "5"}, "gpk": {"S": "a"}})
    ddb.put_item(TableName=table, Item={**_key(with_range, "counter"), "n": {"N": "10"}, "gpk": {"S": "a"}})
    ddb.put_item(TableName=table, Item={**_key(with_range, "doomed"), "n": {"N": "1"}, "gpk": {"S": "b"}})
    ddb.put_item(TableName=table, Item={**_key(with_range, "guard"), "state": {"S": "closed"}})


def _mixed_ops(table: str, with_range: bool, guard_state: str) -> list[dict[str, Any]]:
    return [
        {"Put": {"TableName": table, "Item": {**_key(with_range, "kept"), "n": {"N": "6"}, "gpk": {"S": "b"}}}},
        {
            "Put": {
                "TableName": table,
                "Item": {**_key(with_range, "brand-new"), "n": {"N": "1"}, "gpk": {"S": "a"}},
                "ConditionExpression": "attribute_not_exists(pk)",
            }
        },
        {
            "Update": {
                "TableName": table,
                "Key": _key(with_range, "counter"),
                "UpdateExpression": "ADD n :one SET gpk = :g",
                "ExpressionAttributeValues": {":one": {"N": "1"}, ":g": {"S": "c"}},
            }
        },
        {
            "Update": {
                "TableName": table,
                "Key": _key(with_range, "new-counter"),
                "UpdateExpression": "ADD n :one",
                "ExpressionAttributeValues": {":one": {"N": "1"}},
            }
        },
        {"Delete": {"TableName": table, "Key": _key(with_range, "doomed")}},
        {
            "ConditionCheck": {
                "TableName": table,
                "Key": _key(with_range, "guard"),
                "ConditionExpression": "#s = :open",
                "ExpressionAttributeNames": {"#s": "state"},
                "ExpressionAttributeValues": {":open": {"S": guard_state}},
            }
        },
    ]


@pytest.mark.parametrize("with_range", [True, False], ids=["hash+range", "hash only"])
def test_a_failed_condition_cancels_every_operation_and_leaves_every_item_unchanged(
    ddb: Any, with_range: bool
) -> None:
    table = _table(ddb, with_range=with_range)
    _seed(ddb, table, with_range)
    before = _everything(ddb, table)

    err = _cancel(ddb, _mixed_ops(table, with_range, guard_state="open"))

    assert err.response["Error"]["Code"] == "TransactionCanceledException"
    codes = [r.get("Code", "None") for r in err.response["CancellationReasons"]]
    assert codes == ["None"] * 5 + ["ConditionalCheckFailed"]
    assert _everything(ddb, table) == before
    assert (_gsi(ddb, table, "a"), _gsi(ddb, table, "b"), _gsi(ddb, table, "c")) == (
        ["counter", "kept"],
        ["doomed"],
        [],
    )


@pytest.mark.parametrize("with_range", [True, False], ids=["hash+range", "hash only"])
def test_a_transaction_whose_conditions_hold_applies_every_operation(ddb: Any, with_range: bool) -> None:
    table = _table(ddb, with_range=with_range)
    _seed(ddb, table, with_range)

    ddb.transact_write_items(TransactItems=_mixed_ops(table, with_range, guard_state="closed"))

    after = {i["pk"]["S"]: i for i in _everything(ddb, table)[table]}
    assert sorted(after) == ["brand-new", "counter", "guard", "kept", "new-counter"]
    assert after["kept"]["n"] == {"N": "6"}
    assert after["counter"]["n"] == {"N": "11"}
    assert after["new-counter"]["n"] == {"N": "1"}
    assert (_gsi(ddb, table, "a"), _gsi(ddb, table, "b"), _gsi(ddb, table, "c")) == (
        ["brand-new"],
        ["kept"],
        ["counter"],
    )


def test_a_cancelled_transaction_across_tables_restores_all_of_them_and_names_the_failing_item(
    ddb: Any,
) -> None:
    first, second, third = _table(ddb), _table(ddb), _table(ddb, with_range=False)
    ddb.put_item(TableName=first, Item={**_key(True, "a"), "v": {"S": "old"}})
    ddb.put_item(TableName=third, Item={**_key(False, "dup"), "v": {"S": "there"}})
    before = _everything(ddb, first, second, third)

    err = ddb.exceptions.TransactionCanceledException
    with pytest.raises(err) as raised:
        ddb.transact_write_items(
            TransactItems=[
                {"Put": {"TableName": first, "Item": {**_key(True, "a"), "v": {"S": "new"}}}},
                {"Put": {"TableName": second, "Item": {**_key(True, "b"), "v": {"S": "new"}}}},
                {
                    "Put": {
                        "TableName": third,
                        "Item": {**_key(False, "dup"), "v": {"S": "again"}},
                        "ConditionExpression": "attribute_not_exists(pk)",
                        "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                    }
                },
            ]
        )

    reasons = raised.value.response["CancellationReasons"]
    assert [r["Code"] for r in reasons] == ["None", "None", "ConditionalCheckFailed"]
    assert reasons[2]["Item"] == {"pk": {"S": "dup"}, "v": {"S": "there"}}
    assert _everything(ddb, first, second, third) == before


def test_an_update_that_fails_after_earlier_writes_cancels_them_too(ddb: Any) -> None:
    table = _table(ddb)
    ddb.put_item(TableName=table, Item={**_key(True, "text"), "n": {"S": "not a number"}})
    before = _everything(ddb, table)

    err = _cancel(
        ddb,
        [
            {"Put": {"TableName": table, "Item": {**_key(True, "fresh"), "gpk": {"S": "z"}}}},
            {
                "Update": {
                    "TableName": table,
                    "Key": _key(True, "text"),
                    "UpdateExpression": "ADD n :one",
                    "ExpressionAttributeValues": {":one": {"N": "1"}},
                }
            },
        ],
    )

    assert err.response["Error"]["Code"] == "ValidationException"  # as on AWS: a type error
    assert _everything(ddb, table) == before
    assert _gsi(ddb, table, "z") == []


def test_two_operations_on_one_item_are_rejected_without_writing_anything(ddb: Any) -> None:
    table = _table(ddb)
    before = _everything(ddb, table)

    err = _cancel(
        ddb,
        [
            {"Put": {"TableName": table, "Item": {**_key(True, "other"), "v": {"S": "1"}}}},
            {"Put": {"TableName": table, "Item": {**_key(True, "same"), "v": {"S": "1"}}}},
            {"Delete": {"TableName": table, "Key": _key(True, "same")}},
        ],
    )

    assert err.response["Error"]["Code"] == "ValidationException"
    assert _everything(ddb, table) == before


def test_queries_read_one_partition_in_order_with_limits_pages_filters_and_indexes(ddb: Any) -> None:
    table = _table(ddb)
    for pk in ("a", "b", "c"):
        for n in range(7):
            ddb.put_item(
                TableName=table,
                Item={"pk": {"S": pk}, "sk": {"S": f"s{n:02d}"}, "n": {"N": str(n)}, "gpk": {"S": f"g{n % 2}"}},
            )

    def q(**extra: Any) -> tuple[list[str], Any]:
        r = ddb.query(
            TableName=table,
            KeyConditionExpression=extra.pop("kce", "pk = :p"),
            ExpressionAttributeValues={":p": {"S": "b"}, **extra.pop("values", {})},
            **extra,
        )
        return [f"{i['pk']['S']}/{i['sk']['S']}" for i in r["Items"]], r.get("LastEvaluatedKey")

    assert q()[0] == [f"b/s{n:02d}" for n in range(7)]
    assert q(ScanIndexForward=False)[0] == [f"b/s{n:02d}" for n in reversed(range(7))]
    assert q(kce="pk = :p AND sk BETWEEN :lo AND :hi", values={":lo": {"S": "s02"}, ":hi": {"S": "s04"}})[0] == [
        "b/s02",
        "b/s03",
        "b/s04",
    ]
    first, last = q(Limit=3)
    assert first == ["b/s00", "b/s01", "b/s02"] and last == {"pk": {"S": "b"}, "sk": {"S": "s02"}}
    assert q(Limit=3, ExclusiveStartKey=last)[0] == ["b/s03", "b/s04", "b/s05"]
    assert q(FilterExpression="n > :three", values={":three": {"N": "3"}})[0] == ["b/s04", "b/s05", "b/s06"]
    assert q(values={":p": {"S": "nobody"}})[0] == []
    assert _gsi(ddb, table, "g1") == ["a", "a", "a", "b", "b", "b", "c", "c", "c"]
    single = _table(ddb, with_range=False)
    ddb.put_item(TableName=single, Item={"pk": {"S": "only"}, "v": {"S": "1"}})
    items = ddb.query(
        TableName=single, KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": {"S": "only"}}
    )["Items"]
    assert items == [{"pk": {"S": "only"}, "v": {"S": "1"}}]


def test_the_launcher_rolls_back_without_replacing_the_table() -> None:
    """In-process: plain moto swaps in a deep copy of the table; the launcher keeps it."""
    from moto import mock_aws
    from moto.dynamodb.exceptions import TransactionCanceledException
    from moto.dynamodb.models import dynamodb_backends

    moto_launcher.apply_patch()
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        table = _table(client)
        client.put_item(TableName=table, Item={**_key(True, "held"), "v": {"S": "1"}})
        backend = dynamodb_backends["123456789012"]["us-east-1"]
        stored = backend.tables[table]
        with pytest.raises(TransactionCanceledException):
            backend.transact_write_items(
                [
                    {"Put": {"TableName": table, "Item": {**_key(True, "x"), "v": {"S": "2"}}}},
                    {
                        "Put": {
                            "TableName": table,
                            "Item": {**_key(True, "held"), "v": {"S": "2"}},
                            "ConditionExpression": "attribute_not_exists(pk)",
                        }
                    },
                ]
            )
        assert backend.tables[table] is stored
        assert sorted(i.hash_key.value for i in stored.all_items()) == ["held"]


def test_the_values_a_query_or_an_add_leaves_behind_are_freed_and_stored_items_stay() -> None:
    """In-process (point 11): plain moto keeps every DynamoType and Item it ever built
    (BaseModel's instances_tracked), so a query's copies and replaced ADD values leak."""
    import gc
    import weakref

    from moto import mock_aws
    from moto.dynamodb.models import dynamodb_backends
    from moto.dynamodb.models.dynamo_type import DynamoType, Item

    moto_launcher.apply_patch()
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        table = _table(client)
        for sk in ("a", "b", "c"):
            client.put_item(TableName=table, Item={**_key(True, "p", sk), "q": {"N": "1"}, "m": {"M": {"x": {"S": "y"}}}})
        backend = dynamodb_backends["123456789012"]["us-east-1"]
        stored = backend.tables[table]
        old_q = weakref.ref(stored.items[DynamoType({"S": "p"})][DynamoType({"S": "a"})].attrs["q"])
        backend.update_item(table, {**_key(True, "p", "a")}, "ADD #q :q", {"#q": "q"}, {":q": {"N": "2"}})
        items, _, _ = backend.query(table, DynamoType({"S": "p"}), None, [], None, None, True, None)
        copies = [weakref.ref(i) for i in items] + [weakref.ref(v) for i in items for v in i.attrs.values()]
        copies += [weakref.ref(i.attrs["m"].value["x"]) for i in items]
        del items
        gc.collect()
        assert [r() for r in copies] == [None] * len(copies)
        assert old_q() is None, "the number the ADD replaced is freed"
        assert not DynamoType.instances_tracked and not Item.instances_tracked
        answer = client.query(
            TableName=table, KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": {"S": "p"}}
        )["Items"]
        assert [(i["sk"]["S"], i["q"]["N"], i["m"]["M"]["x"]["S"]) for i in answer] == [
            ("a", "3", "y"),
            ("b", "1", "y"),
            ("c", "1", "y"),
        ]


def test_the_cached_lookups_give_the_answers_moto_computes_each_time() -> None:
    from moto import backends
    from moto.core import responses, utils
    from moto.dynamodb.responses import DynamoHandler

    moto_launcher.apply_patch()
    original_modules = moto_launcher._originals["backends.list_of_moto_modules"]
    assert backends.list_of_moto_modules() == tuple(original_modules())
    assert "dynamodb" in backends.list_of_moto_modules()
    assert responses.method_names_from_class(DynamoHandler) == utils.method_names_from_class(DynamoHandler)
    assert "transact_write_items" in responses.method_names_from_class(DynamoHandler)


def _start_launcher(port: int, env: dict[str, str], log: Path) -> tuple[subprocess.Popen[bytes], str]:
    """The launcher on `port` with `env`, once it answers."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            SERVERS["launcher"] + ["-H", "127.0.0.1", "-p", str(port)], stdout=out, stderr=subprocess.STDOUT, env=env
        )
    url = f"http://127.0.0.1:{port}"
    for _ in range(150):
        try:
            urllib.request.urlopen(f"{url}/moto-api/")
            break
        except OSError:
            time.sleep(0.2)
    return proc, url


def test_the_launcher_passes_the_environment_to_moto_so_iam_is_enforced(tmp_path: Path) -> None:
    port = _free_port()
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "0"}
    proc, url = _start_launcher(port, env, tmp_path / "iam.log")
    try:
        client = boto3.client(
            "dynamodb",
            endpoint_url=url,
            region_name="us-east-1",
            aws_access_key_id="AKIAUNKNOWNUSER00000",
            aws_secret_access_key="unknown",
            config=Config(retries={"max_attempts": 1}),
        )
        with pytest.raises(ClientError) as denied:
            client.list_tables()
        assert denied.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_the_launcher_refuses_to_start_on_moto_sources_it_was_not_written_for() -> None:
    changed = dict(moto_launcher.EXPECTED_SOURCES)
    changed["DynamoDBBackend.transact_write_items"] = "0" * 64
    with pytest.raises(moto_launcher.IncompatibleMoto, match="transact_write_items changed"):
        moto_launcher.check_moto(changed)
    moto_launcher.check_moto()  # the installed, pinned moto is the expected one


def test_the_launcher_exits_at_start_when_moto_is_not_the_expected_one(tmp_path: Path) -> None:
    shim = tmp_path / "shim.py"
    shim.write_text(
        "import sys; sys.path.insert(0, %r)\n"
        "import moto_launcher\n"
        "moto_launcher.EXPECTED_MOTO_VERSION = '0.0.0'\n"
        "moto_launcher.main(['-p', '1'])\n" % str(HERE)
    )
    run = subprocess.run([sys.executable, str(shim)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 3
    assert "refusing to patch moto" in run.stderr


def test_concurrent_transactions_count_every_success_exactly_once(ddb: Any, endpoint: str, request: pytest.FixtureRequest) -> None:
    """Half the transactions fail a condition while others commit on the same table."""
    if "launcher" not in request.node.callspec.id:
        pytest.skip("plain moto's whole-table restore can erase concurrent writes (ADR 0008)")
    table = _table(ddb)
    ddb.put_item(TableName=table, Item={**_key(True, "counter"), "n": {"N": "0"}})
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()

    def worker(w: int) -> None:
        for i in range(40):
            ledger = f"ledger-{w}-{i // 2}"  # every second id repeats: a duplicate
            try:
                ddb.transact_write_items(
                    TransactItems=[
                        {
                            "Put": {
                                "TableName": table,
                                "Item": {**_key(True, ledger)},
                                "ConditionExpression": "attribute_not_exists(pk)",
                            }
                        },
                        {
                            "Update": {
                                "TableName": table,
                                "Key": _key(True, "counter"),
                                "UpdateExpression": "ADD n :one",
                                "ExpressionAttributeValues": {":one": {"N": "1"}},
                            }
                        },
                    ]
                )
                result = "committed"
            except ddb.exceptions.TransactionCanceledException:
                result = "cancelled"
            with lock:
                outcomes[result] += 1

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    items = _everything(ddb, table)[table]
    ledgers = [i for i in items if i["pk"]["S"].startswith("ledger-")]
    counter = next(i for i in items if i["pk"]["S"] == "counter")
    assert outcomes == Counter(committed=160, cancelled=160)
    assert len(ledgers) == 160
    assert counter["n"] == {"N": "160"}


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"] + sys.argv[1:]))


# --- IAM enforcement (MOTO_LAUNCHER_IAM=1, ADR 0010) -------------------------------------


@pytest.fixture(scope="module")
def iam_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    port = _free_port()
    tmp = tmp_path_factory.mktemp("moto-iam")
    log = tmp / "permitted.jsonl"
    env = {**os.environ, "MOTO_LAUNCHER_IAM": "1", "MOTO_LAUNCHER_IAM_LOG": str(log)}
    proc, url = _start_launcher(port, env, tmp / "server.log")
    try:
        yield url, log
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _client(service: str, url: str, key: str = "testing", secret: str = "testing") -> Any:
    return boto3.client(
        service,
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        config=Config(retries={"max_attempts": 1}),
    )


def _user_with(url: str, statements: list[dict[str, Any]]) -> tuple[str, str, str]:
    """An IAM user (created by the admin key) carrying exactly these statements."""
    iam = _client("iam", url)
    name = f"fn-{uuid.uuid4().hex[:8]}"
    iam.create_user(UserName=name)
    iam.put_user_policy(
        UserName=name,
        PolicyName="inline",
        PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": statements}),
    )
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return name, key["AccessKeyId"], key["SecretAccessKey"]


def _denied(err: pytest.ExceptionInfo[ClientError]) -> str:
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403, err.value.response
    return str(err.value)


def test_with_iam_on_a_transaction_is_authorised_item_by_item_as_on_aws(iam_endpoint: tuple[str, Path]) -> None:
    url, _ = iam_endpoint
    admin = _client("dynamodb", url)
    table = _table(admin, with_range=False)
    arn = f"arn:aws:dynamodb:us-east-1:123456789012:table/{table}"
    items = [
        {"Put": {"TableName": table, "Item": _key(False, "a")}},
        {"Update": {"TableName": table, "Key": _key(False, "b"), "UpdateExpression": "SET v = :v",
                    "ExpressionAttributeValues": {":v": {"S": "1"}}}},
    ]
    # moto alone would ask for dynamodb:TransactWriteItems, an action AWS never checks.
    _, key, secret = _user_with(url, [{"Effect": "Allow", "Action": ["dynamodb:TransactWriteItems"], "Resource": "*"}])
    with pytest.raises(ClientError) as err:
        _client("dynamodb", url, key, secret).transact_write_items(TransactItems=items)
    assert "dynamodb:PutItem on resource: " + arn in _denied(err)
    _, key, secret = _user_with(url, [{"Effect": "Allow", "Action": ["dynamodb:PutItem"], "Resource": arn}])
    with pytest.raises(ClientError) as err:
        _client("dynamodb", url, key, secret).transact_write_items(TransactItems=items)
    assert "dynamodb:UpdateItem on resource: " + arn in _denied(err)
    assert _everything(admin, table)[table] == []
    _, key, secret = _user_with(
        url, [{"Effect": "Allow", "Action": ["dynamodb:PutItem", "dynamodb:UpdateItem"], "Resource": arn}]
    )
    _client("dynamodb", url, key, secret).transact_write_items(TransactItems=items)
    assert len(_everything(admin, table)[table]) == 2


def test_with_iam_dynamodb_calls_are_authorised_against_the_table_they_name(iam_endpoint: tuple[str, Path]) -> None:
    url, log = iam_endpoint
    admin = _client("dynamodb", url)
    mine, other = _table(admin, with_range=False), _table(admin, with_range=False)
    arn = f"arn:aws:dynamodb:us-east-1:123456789012:table/{mine}"
    name, key, secret = _user_with(
        url, [{"Effect": "Allow", "Action": ["dynamodb:PutItem", "dynamodb:BatchWriteItem"], "Resource": arn}]
    )
    ddb = _client("dynamodb", url, key, secret)
    ddb.put_item(TableName=mine, Item=_key(False, "x"))
    with pytest.raises(ClientError) as err:
        ddb.put_item(TableName=other, Item=_key(False, "x"))
    assert f"table/{other}" in _denied(err)
    with pytest.raises(ClientError) as err:
        ddb.batch_write_item(
            RequestItems={t: [{"PutRequest": {"Item": _key(False, "y")}}] for t in (mine, other)}
        )
    assert f"dynamodb:BatchWriteItem on resource: arn:aws:dynamodb:us-east-1:123456789012:table/{other}" in _denied(err)
    user = f"arn:aws:iam::123456789012:user/{name}"
    checks = [json.loads(line) for line in log.read_text().splitlines()]
    assert {"user": user, "operation": "PutItem", "action": "dynamodb:PutItem", "resource": arn, "allowed": True} in checks
    other_arn = f"arn:aws:dynamodb:us-east-1:123456789012:table/{other}"
    assert {"user": user, "operation": "BatchWriteItem", "action": "dynamodb:BatchWriteItem", "resource": other_arn, "allowed": False} in checks
    assert all(c["resource"] != other_arn for c in checks if c["allowed"])


def test_with_iam_sns_publish_is_authorised_against_the_topic(iam_endpoint: tuple[str, Path]) -> None:
    url, _ = iam_endpoint
    admin = _client("sns", url)
    mine = admin.create_topic(Name=f"t-{uuid.uuid4().hex[:8]}")["TopicArn"]
    other = admin.create_topic(Name=f"t-{uuid.uuid4().hex[:8]}")["TopicArn"]
    _, key, secret = _user_with(url, [{"Effect": "Allow", "Action": ["sns:Publish"], "Resource": mine}])
    sns = _client("sns", url, key, secret)
    sns.publish(TopicArn=mine, Message="hello")
    with pytest.raises(ClientError) as err:
        sns.publish(TopicArn=other, Message="hello")
    assert f"sns:Publish on resource: {other}" in _denied(err)


def test_with_iam_secrets_are_authorised_against_the_secret_arn_whatever_names_it(iam_endpoint: tuple[str, Path]) -> None:
    url, _ = iam_endpoint
    admin = _client("secretsmanager", url)
    mine = admin.create_secret(Name=f"s-{uuid.uuid4().hex[:8]}", SecretString="one")
    other = admin.create_secret(Name=f"s-{uuid.uuid4().hex[:8]}", SecretString="two")
    # A policy names the full ARN (random suffix included), as the template's Ref does.
    _, key, secret = _user_with(
        url, [{"Effect": "Allow", "Action": ["secretsmanager:GetSecretValue"], "Resource": mine["ARN"]}]
    )
    sm = _client("secretsmanager", url, key, secret)
    assert sm.get_secret_value(SecretId=mine["ARN"])["SecretString"] == "one"
    assert sm.get_secret_value(SecretId=mine["Name"])["SecretString"] == "one"
    with pytest.raises(ClientError) as err:
        sm.get_secret_value(SecretId=other["Name"])
    assert f"secretsmanager:GetSecretValue on resource: {other['ARN']}" in _denied(err)
    with pytest.raises(ClientError) as err:
        sm.put_secret_value(SecretId=mine["ARN"], SecretString="mine now")
    assert f"secretsmanager:PutSecretValue on resource: {mine['ARN']}" in _denied(err)


def test_with_iam_sqs_calls_are_authorised_against_the_queue(iam_endpoint: tuple[str, Path]) -> None:
    url, _ = iam_endpoint
    admin = _client("sqs", url)
    mine = admin.create_queue(QueueName=f"q-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    other = admin.create_queue(QueueName=f"q-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    arn = admin.get_queue_attributes(QueueUrl=mine, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    _, key, secret = _user_with(url, [{"Effect": "Allow", "Action": ["sqs:SendMessage*"], "Resource": arn}])
    sqs = _client("sqs", url, key, secret)
    sqs.send_message(QueueUrl=mine, MessageBody="x")
    with pytest.raises(ClientError) as err:
        sqs.send_message(QueueUrl=other, MessageBody="x")
    _denied(err)
    with pytest.raises(ClientError) as err:
        sqs.receive_message(QueueUrl=mine)
    _denied(err)


def test_with_iam_an_unknown_key_is_refused_and_the_admin_key_is_not_checked(iam_endpoint: tuple[str, Path]) -> None:
    url, _ = iam_endpoint
    with pytest.raises(ClientError) as err:
        _client("dynamodb", url, "AKIAUNKNOWNUSER00000", "x").list_tables()
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    _client("dynamodb", url).list_tables()


def test_with_iam_sqs_batch_calls_need_the_single_action_as_on_aws(iam_endpoint: tuple[str, Path]) -> None:
    url, _ = iam_endpoint
    admin = _client("sqs", url)
    queue = admin.create_queue(QueueName=f"q-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    arn = admin.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    _, key, secret = _user_with(url, [{"Effect": "Allow", "Action": ["sqs:SendMessage"], "Resource": arn}])
    sent = _client("sqs", url, key, secret).send_message_batch(
        QueueUrl=queue, Entries=[{"Id": "1", "MessageBody": "a"}, {"Id": "2", "MessageBody": "b"}]
    )
    assert len(sent["Successful"]) == 2
    _, key, secret = _user_with(url, [{"Effect": "Allow", "Action": ["sqs:SendMessageBatch"], "Resource": arn}])
    with pytest.raises(ClientError) as err:
        _client("sqs", url, key, secret).send_message_batch(QueueUrl=queue, Entries=[{"Id": "1", "MessageBody": "a"}])
    assert "sqs:SendMessage on resource" in _denied(err)


def test_with_iam_a_form_body_is_checked_as_signed_not_as_python_re_encodes_it(iam_endpoint: tuple[str, Path]) -> None:
    """The Rust SDK encodes a space as %20; Python's form encoder writes '+'."""
    import botocore.auth
    import botocore.awsrequest
    import botocore.credentials

    url, _ = iam_endpoint
    topic = _client("sns", url).create_topic(Name=f"t-{uuid.uuid4().hex[:8]}")["TopicArn"]
    _, key, secret = _user_with(url, [{"Effect": "Allow", "Action": ["sns:Publish"], "Resource": topic}])
    body = "Action=Publish&Version=2010-03-31&TopicArn=" + urllib.parse.quote(topic, safe="") + "&Message=two%20words"
    request = botocore.awsrequest.AWSRequest(
        method="POST", url=url + "/", data=body, headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    botocore.auth.SigV4Auth(botocore.credentials.Credentials(key, secret), "sns", "us-east-1").add_auth(request)
    prepared = request.prepare()
    answer = urllib.request.urlopen(
        urllib.request.Request(url + "/", data=body.encode(), headers=dict(prepared.headers), method="POST")
    )
    assert answer.status == 200


def _twin_tables(backend: Any, client: Any) -> tuple[str, str]:
    """Two identical tables (hash+range, a GSI on `gpk`, a stream) seeded alike."""
    names = []
    for _ in range(2):
        name = _table(client)
        client.update_table(
            TableName=name, StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"}
        )
        for pk in ("a", "b", "c"):
            client.put_item(TableName=name, Item={**_key(True, pk), "q": {"N": "5"}, "s": {"S": "text"}})
        client.put_item(TableName=name, Item={**_key(True, "d"), "q": {"N": "1.5"}, "gpk": {"S": "g"}})
        names.append(name)
    return names[0], names[1]


def _random_add(rng: Any) -> tuple[dict[str, Any], str, dict[str, str], dict[str, Any], Any]:
    """An update as the rollup writes it (ADD of numbers by placeholder), or one of its
    near misses: other types, keys, duplicates, undefined placeholders, a condition."""
    key = _key(True, rng.choice("abcdef"), rng.choice(["x", "y"]))
    actions, names, values = [], {}, {}
    for i in range(rng.randint(1, 4)):
        if rng.random() < 0.85:
            attr = rng.choice(["q", "n", "q05", "n05", "q23", "new"])
            value = rng.choice([{"N": "1"}, {"N": "-3"}, {"N": "2.50"}, {"N": "0"}, {"N": "12"}])
        else:
            attr = rng.choice(["q", "s", "gpk", "pk", "sk"])
            value = rng.choice([{"N": "1e3"}, {"N": "007"}, {"S": "x"}, {"NS": ["1"]}, {"N": "1"}])
        name_ph = f"#{attr}" if rng.random() < 0.9 else f"#n{i}"
        names[name_ph] = attr
        value_ph = f":v{i}"
        if rng.random() < 0.97:
            values[value_ph] = value
        actions.append(f"{name_ph} {value_ph}")
    expression = "ADD " + rng.choice([", ", " , ", ","]).join(actions)
    if rng.random() < 0.03:
        expression = expression.replace("ADD ", "add  ")
    condition = "attribute_exists(q)" if rng.random() < 0.05 else None
    return key, expression, names, values, condition


def test_adds_of_numbers_give_what_moto_gives_item_for_item_error_for_error() -> None:
    """Point 7, in-process: 600 random updates (the rollup's ADD form and near misses)
    applied by moto's own update_item to one table and by the launcher's to its twin:
    the same result or the same error each time, the same items and stream records."""
    import random

    from moto import mock_aws
    from moto.dynamodb.models import DynamoDBBackend, dynamodb_backends

    moto_launcher.apply_patch()
    original = moto_launcher._originals["DynamoDBBackend.update_item"]
    assert DynamoDBBackend.update_item is not original
    rng = random.Random(16)
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        backend = dynamodb_backends["123456789012"]["us-east-1"]
        plain, launcher = _twin_tables(backend, client)
        outcomes = Counter()
        for _ in range(600):
            key, expression, names, values, condition = _random_add(rng)
            results = []
            for table, update_item in ((plain, original), (launcher, DynamoDBBackend.update_item)):
                try:
                    item = update_item(backend, table, key, expression, names, values, condition_expression=condition)
                    results.append(("ok", item.to_json()))
                except Exception as err:  # noqa: BLE001 - the errors are what is compared
                    results.append((type(err).__name__, str(err)))
            assert results[0] == results[1], (expression, names, values)
            outcomes[results[0][0]] += 1
        assert _everything(client, plain)[plain] == _everything(client, launcher)[launcher]
        streams = [
            [(r.record["eventName"], r.record["dynamodb"].get("NewImage"), r.record["dynamodb"].get("OldImage"))
             for r in backend.tables[t].stream_shard.items]
            for t in (plain, launcher)
        ]
        assert streams[0] == streams[1]
    # The sequence exercised both the direct path and moto's errors.
    assert outcomes["ok"] > 250 and len(outcomes) > 3, outcomes


def test_a_transaction_of_adds_counts_and_cancels_as_moto_does(ddb: Any) -> None:
    """Point 7 over HTTP, on both servers: the rollup's transaction form (a part marker
    and ADDs by placeholder) applies, sums exactly, and a repeat is cancelled whole."""
    table = _table(ddb)

    def part(values: list[str]) -> list[dict[str, Any]]:
        ops: list[dict[str, Any]] = [
            {
                "Put": {
                    "TableName": table,
                    "Item": {**_key(True, "marker", "part-0")},
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            }
        ]
        for i, v in enumerate(values):
            ops.append(
                {
                    "Update": {
                        "TableName": table,
                        "Key": _key(True, "rollup", f"day-{i}"),
                        "UpdateExpression": "ADD #q :q, #n :n, #q05 :q05, #n05 :n05",
                        "ExpressionAttributeNames": {"#q": "q", "#n": "n", "#q05": "q05", "#n05": "n05"},
                        "ExpressionAttributeValues": {
                            ":q": {"N": v},
                            ":n": {"N": "1"},
                            ":q05": {"N": v},
                            ":n05": {"N": "1"},
                        },
                    }
                }
            )
        return ops

    ddb.put_item(TableName=table, Item={**_key(True, "rollup", "day-0"), "q": {"N": "0.5"}, "n": {"N": "1"}})
    ddb.transact_write_items(TransactItems=part(["2.25", "3", "-1"]))
    after = {i["sk"]["S"]: i for i in _everything(ddb, table)[table] if i["pk"]["S"] == "rollup"}
    assert after["day-0"] == {
        **_key(True, "rollup", "day-0"),
        "q": {"N": "2.75"},
        "n": {"N": "2"},
        "q05": {"N": "2.25"},
        "n05": {"N": "1"},
    }
    assert (after["day-1"]["q"], after["day-2"]["q"], after["day-2"]["n05"]) == ({"N": "3"}, {"N": "-1"}, {"N": "1"})
    before = _everything(ddb, table)
    err = _cancel(ddb, part(["7", "7", "7"]))
    assert [r.get("Code", "None") for r in err.response["CancellationReasons"]] == ["ConditionalCheckFailed"] + [
        "None"
    ] * 3
    assert _everything(ddb, table) == before


def _tree(node: Any) -> Any:
    """A syntax tree as nested tuples (node type, children), leaves as their repr."""
    children = getattr(node, "children", None)
    if isinstance(children, (list, tuple)):
        return (type(node).__name__, tuple(_tree(c) for c in children))
    to_json = getattr(node, "to_json", None)
    return to_json() if callable(to_json) else repr(node)


def test_an_update_expression_is_parsed_once_and_its_tree_is_never_changed_by_its_users() -> None:
    """Point 8: moto's own update path (SET and ADD with raw names: not the direct ADD)
    run twice with one expression text parses it once, leaves the shared tree as parsed,
    and gives the results moto gives with a fresh parse each time."""
    from moto import mock_aws
    from moto.dynamodb.models import dynamodb_backends
    from moto.dynamodb.parsing.expressions import UpdateExpressionParser

    moto_launcher.apply_patch()
    fresh = moto_launcher._originals["UpdateExpressionParser.make"]
    expression = "SET note = :note, #g = :g ADD n :one REMOVE gone"
    shared = UpdateExpressionParser.make(expression)
    pristine = _tree(fresh(expression))
    assert _tree(shared) == pristine and "UpdateExpressionAddAction" in str(pristine)
    assert UpdateExpressionParser.make(expression) is shared
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        table = _table(client)
        backend = dynamodb_backends["123456789012"]["us-east-1"]
        client.put_item(TableName=table, Item={**_key(True, "a"), "n": {"N": "1"}, "gone": {"S": "x"}})
        for value in ("first", "second"):
            backend.update_item(
                table,
                _key(True, "a"),
                expression,
                {"#g": "gpk"},
                {":note": {"S": value}, ":g": {"S": value}, ":one": {"N": "1"}},
            )
        after = _everything(client, table)[table]
    assert after == [{**_key(True, "a"), "n": {"N": "3"}, "note": {"S": "second"}, "gpk": {"S": "second"}}]
    assert _tree(UpdateExpressionParser.make(expression)) == pristine
    with pytest.raises(Exception) as bad:
        UpdateExpressionParser.make("ADD")
    with pytest.raises(type(bad.value)):
        UpdateExpressionParser.make("ADD")  # errors are raised every time, not cached


def _random_condition(rng: Any) -> tuple[str, dict[str, str], dict[str, Any]]:
    """A condition as the pipeline writes them, or another of moto's grammar, or a
    broken one (unknown placeholder, unused name, reserved word, bad syntax)."""
    names: dict[str, str] = {}
    values: dict[str, Any] = {}
    parts = []
    for i in range(rng.randint(1, 3)):
        attr = rng.choice(["pk", "q", "s", "state", "gone"])
        ref = attr
        if rng.random() < 0.5:
            ref = f"#a{i}"
            names[ref] = attr
        value = rng.choice([{"N": "5"}, {"N": "6"}, {"S": "text"}, {"S": "open"}, {"N": "5.0"}])
        form = rng.choice(["exists", "not_exists", "eq", "lt", "begins", "between", "in", "size"])
        if form in ("exists", "not_exists"):
            parts.append(f"attribute_{form}({ref})")
            continue
        values[f":v{i}"] = value
        parts.append(
            {
                "eq": f"{ref} = :v{i}",
                "lt": f"{ref} < :v{i}",
                "begins": f"begins_with({ref}, :v{i})",
                "between": f"{ref} BETWEEN :v{i} AND :v{i}",
                "in": f"{ref} IN (:v{i}, :v{i})",
                "size": f"size({ref}) > :v{i}",
            }[form]
        )
    expression = rng.choice([" AND ", " OR "]).join(parts)
    if rng.random() < 0.2:
        expression = f"NOT ({expression})"
    roll = rng.random()
    if roll < 0.04:
        expression += " AND #missing = :v0"
    elif roll < 0.08:
        names["#unused"] = "q"
    elif roll < 0.1:
        expression = expression.replace("(", "((", 1)
    elif roll < 0.12:
        expression += " AND size = :v0"
    return expression, names, values


def test_condition_expressions_give_what_moto_gives_item_for_item_error_for_error() -> None:
    """Point 9, in-process: 500 random conditions (most repeated, as the pipeline's are)
    parsed by the launcher (cached) and by moto's own parse (fresh each time): the same
    verdict on every item or the same error, and the same names and values found."""
    import random

    from moto.dynamodb.comparisons import ConditionExpressionParser
    from moto.dynamodb.models.dynamo_type import DynamoType, Item

    moto_launcher.apply_patch()
    original = moto_launcher._originals["ConditionExpressionParser.parse"]
    assert ConditionExpressionParser.parse is not original
    items = [None] + [
        Item(DynamoType({"S": pk}), None, {"pk": {"S": pk}, **attrs})
        for pk, attrs in [
            ("a", {"q": {"N": "5"}, "s": {"S": "text"}}),
            ("b", {"q": {"N": "6"}, "state": {"S": "open"}}),
            ("c", {"s": {"S": "textual"}, "state": {"S": "closed"}}),
        ]
    ]
    rng = random.Random(9)
    pool = [_random_condition(rng) for _ in range(60)]
    outcomes: Counter[str] = Counter()
    for _ in range(500):
        expression, names, values = rng.choice(pool)
        results = []
        for parse in (original, ConditionExpressionParser.parse):
            parser = ConditionExpressionParser(expression, json.loads(json.dumps(names)), json.loads(json.dumps(values)))
            try:
                op = parse(parser)
                verdicts: list[Any] = []
                for item in items:
                    try:
                        verdicts.append(op.expr(item))
                    except Exception as err:  # noqa: BLE001 - the errors are what is compared
                        verdicts.append(type(err).__name__)
                results.append(("ok", verdicts, parser.expr_attr_names_found, parser.expr_attr_values_found))
            except Exception as err:  # noqa: BLE001
                results.append((type(err).__name__, str(err)))
        assert results[0] == results[1], (expression, names, values)
        outcomes[results[0][0]] += 1
    assert outcomes["ok"] > 300 and len(outcomes) > 1, outcomes
    assert ConditionExpressionParser.parse.counts["hits"] > 300  # type: ignore[attr-defined]


def test_a_condition_text_repeated_with_other_values_or_names_is_judged_on_its_own(ddb: Any) -> None:
    """Point 9 over HTTP, on both servers: one condition text with different values and
    names (puts, updates, deletes, a transaction) answers for the values it is sent
    with, and an unused or undefined name is refused every time."""
    table = _table(ddb)
    ddb.put_item(TableName=table, Item={**_key(True, "a"), "state": {"S": "open"}, "n": {"N": "1"}})
    condition = "#f = :v"
    verdicts = []
    for field, value in [("state", "open"), ("state", "closed"), ("n", "1"), ("state", "open")]:
        value_json = {"N": value} if field == "n" else {"S": value}
        try:
            ddb.put_item(
                TableName=table,
                Item={**_key(True, "a"), "state": {"S": "open"}, "n": {"N": "1"}},
                ConditionExpression=condition,
                ExpressionAttributeNames={"#f": field},
                ExpressionAttributeValues={":v": value_json},
            )
            verdicts.append("put")
        except ClientError as err:
            verdicts.append(err.response["Error"]["Code"])
    assert verdicts == ["put", "ConditionalCheckFailedException", "put", "put"]
    refusals = []
    for _ in range(2):
        with pytest.raises(ClientError) as unused:
            ddb.delete_item(
                TableName=table,
                Key=_key(True, "a"),
                ConditionExpression="attribute_exists(pk)",
                ExpressionAttributeNames={"#unused": "n"},
            )
        with pytest.raises(ClientError) as undefined:
            ddb.update_item(
                TableName=table,
                Key=_key(True, "a"),
                UpdateExpression="SET n = :one",
                ConditionExpression="#g = :one",
                ExpressionAttributeValues={":one": {"N": "1"}},
            )
        refusals.append((unused.value.response["Error"]["Code"], undefined.value.response["Error"]["Code"]))
    # moto answers an undefined name with a 500 (plain and launcher alike).
    assert refusals == [("ValidationException", "500")] * 2
    check = {
        "ConditionCheck": {
            "TableName": table,
            "Key": _key(True, "a"),
            "ConditionExpression": condition,
            "ExpressionAttributeNames": {"#f": "state"},
            "ExpressionAttributeValues": {":v": {"S": "closed"}},
        }
    }
    write = {"Put": {"TableName": table, "Item": {**_key(True, "b")}, "ConditionExpression": "attribute_not_exists(pk)"}}
    err = _cancel(ddb, [write, check])
    assert [r.get("Code", "None") for r in err.response["CancellationReasons"]] == ["None", "ConditionalCheckFailed"]
    check["ConditionCheck"]["ExpressionAttributeValues"] = {":v": {"S": "open"}}
    ddb.transact_write_items(TransactItems=[write, check])
    assert [i["pk"]["S"] for i in _everything(ddb, table)[table]] == ["a", "b"]


def _random_attrs(rng: Any) -> dict[str, Any]:
    """Item attributes of every type, some near or over moto's size limit."""
    attrs: dict[str, Any] = {"pk": {"S": rng.choice(["a", "b"])}}
    for i in range(rng.randint(0, 12)):
        kind = rng.choice(["S", "N", "B", "BOOL", "NULL", "SS", "NS", "L", "M", "big"])
        name = rng.choice(["tenant", "source", "chunk", "pos", "event", "é-ünïcode", f"a{i}"])
        attrs[name] = {
            "S": {"S": rng.choice(["dev", "import", "", "ünïcode", "x" * 70])},
            "N": {"N": rng.choice(["0", "-12.5", "1790000000"])},
            "B": {"B": "aGVsbG8="},
            "BOOL": {"BOOL": rng.random() < 0.5},
            "NULL": {"NULL": True},
            "SS": {"SS": ["a", "b"]},
            "NS": {"NS": ["1", "2.5"]},
            "L": {"L": [{"S": "dev"}, {"N": "1"}, {"M": {"k": {"S": "v"}}}]},
            "M": {"M": {"id": {"S": "e-1"}, "account": {"S": "acme"}, "q": {"N": "3"}, "nested": {"L": [{"S": "x"}]}}},
            "big": {"S": "y" * rng.choice([100_000, 200_000, 404_900])},
        }[kind]
    return attrs


def test_items_are_built_as_moto_builds_them_and_refused_at_the_same_size() -> None:
    """Point 10, in-process: 400 random items (every type, texts interned, sizes around
    moto's 405,000-byte limit) built by the launcher and by moto's own Item.__init__:
    the same attributes, in the same order, or the same error."""
    import random

    from moto.dynamodb.models.dynamo_type import DynamoType, Item

    moto_launcher.apply_patch()
    original = moto_launcher._originals["Item.__init__"]
    assert Item.__init__ is not original
    rng = random.Random(10)
    outcomes: Counter[str] = Counter()
    for _ in range(400):
        attrs = _random_attrs(rng)
        results = []
        for init in (original, Item.__init__):
            item = Item.__new__(Item)
            try:
                init(item, DynamoType(attrs["pk"]), None, json.loads(json.dumps(attrs)))
                results.append(("ok", list(item.attrs), item.to_json(), item.size(), type(item.attrs).__name__))
            except Exception as err:  # noqa: BLE001 - the errors are what is compared
                results.append((type(err).__name__, str(err)))
        assert results[0] == results[1]
        outcomes[results[0][0]] += 1
    assert outcomes["ok"] > 100 and outcomes["ItemSizeTooLarge"] > 10, outcomes
    # The stored item still checks its size on later writes (moto's LimitedSizeDict).
    item = Item(DynamoType({"S": "a"}), None, {"pk": {"S": "a"}, "big": {"S": "y" * 404_000}})
    with pytest.raises(Exception) as too_large:
        item.attrs["more"] = DynamoType({"S": "z" * 2_000})
    assert type(too_large.value).__name__ == "ItemSizeTooLarge"


def test_adds_near_the_item_size_limit_are_refused_where_moto_refuses_them() -> None:
    """Point 7 keeps the item's size as moto's LimitedSizeDict sums it: on items a few
    bytes under the limit, the same ADDs succeed, or fail at the same action with the
    same error and the same item left behind."""
    from moto import mock_aws
    from moto.dynamodb.models import DynamoDBBackend, dynamodb_backends

    moto_launcher.apply_patch()
    original = moto_launcher._originals["DynamoDBBackend.update_item"]
    outcomes: Counter[str] = Counter()
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        backend = dynamodb_backends["123456789012"]["us-east-1"]
        tables = [_table(client), _table(client)]
        for room in range(0, 40, 3):
            filler = "y" * (405000 - 40 - len("big") - len("pk") - len("sk") - 2 + room)
            results = []
            for table, update_item in zip(tables, (original, DynamoDBBackend.update_item)):
                client.put_item(TableName=table, Item={**_key(True, "a"), "q": {"N": "5"}})
                try:
                    client.put_item(TableName=table, Item={**_key(True, "a"), "q": {"N": "5"}, "big": {"S": filler}})
                except ClientError as err:
                    results.append(("put refused", err.response["Error"]["Code"]))
                    continue
                try:
                    update_item(
                        backend,
                        table,
                        _key(True, "a"),
                        "ADD #q :q, #new :n, #n2 :n",
                        {"#q": "q", "#new": "new", "#n2": "n2"},
                        {":q": {"N": "123456"}, ":n": {"N": "1"}},
                    )
                    outcome = "ok"
                except Exception as err:  # noqa: BLE001 - the errors are what is compared
                    outcome = type(err).__name__
                item = backend.tables[table].get_item(*(_dt(v) for v in _key(True, "a").values()))
                results.append((outcome, {k: v.value for k, v in item.attrs.items() if k != "big"}))
            assert results[0] == results[1], room
            outcomes[results[0][0]] += 1
    assert outcomes["ok"] > 0 and outcomes["ItemSizeToUpdateTooLarge"] > 0, outcomes


def _dt(value: dict[str, Any]) -> Any:
    from moto.dynamodb.models.dynamo_type import DynamoType

    return DynamoType(value)
