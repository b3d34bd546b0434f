"""moto's server with a TransactWriteItems rollback that copies items, not tables.

Usage: exactly like ``moto_server`` (``moto_launcher.py -H 127.0.0.1 -p 4566``); the
environment (``INITIAL_NO_AUTH_ACTION_COUNT``, ``MOTO_*``...) reaches moto unchanged.

Why (ADR 0008): moto 5.1.22's ``DynamoDBBackend.transact_write_items`` takes a
``copy.deepcopy`` of every table the transaction names, on every call, to restore them if
the transaction is cancelled. Time and memory per transaction then grow with everything
already stored: a 4,400-event import had not finished after 11 minutes and the server
grew past 10 GB.

What this changes, and nothing else:

1. Inside ``transact_write_items`` (only in the thread running it) a ``Table`` deep-copies
   to itself, so moto's own backup line costs nothing and its own rollback assignment
   (``self.tables[name] = backup``) puts back the same object.
2. Before moto's code runs, a journal records a deep copy of every item the transaction
   names (or that it was absent), and the length of the table's stream shard. If moto's
   code raises (cancellation, validation, duplicate targets, anything), the journal puts
   back exactly those items, so the result is what moto's table restore gives.
3. DynamoDB requests are served one at a time (a lock around ``DynamoHandler.call_action``),
   as moto's Python code holds the GIL anyway: a transaction and its rollback are then
   atomic against concurrent requests, as on AWS. Without it, moto's whole-table restore
   erased the writes other threads made during a cancelled transaction.
4. Two per-request lookups of static data (moto's module list, a response class's method
   names) are computed once instead of on every request (see _cache_static_lookups).
5. A Query on the table's own key reads the one partition it names instead of sorting
   every item of the table to filter them (see _query_one_partition).
6. Only with ``MOTO_LAUNCHER_IAM=1`` (ADR 0010): every request is authenticated and
   authorised against the IAM users and policies created in moto, closer to AWS than
   moto's own check: DynamoDB actions against the table (or index) ARN, each item of a
   transaction or batch as AWS checks it (``dynamodb:PutItem``/``UpdateItem``/
   ``DeleteItem``/``ConditionCheckItem`` per item, not ``TransactWriteItems`` on ``*``),
   SNS actions against the topic ARN, SQS batch calls as their single form (AWS has no
   ``sqs:SendMessageBatch`` action; moto asks for it). The key ``MOTO_LAUNCHER_ADMIN_KEY`` (default
   ``testing``) is the account's root: it is never checked, as root is not on AWS.
   ``MOTO_LAUNCHER_IAM_LOG=path`` appends every check (user, API operation, IAM action,
   resource, allowed)
   as a JSON line: tests read the denials, and ``usage-local iam-coverage`` checks that
   every granted action was used.
7. An update whose expression only ``ADD``s numbers to top-level, non-key attributes
   named by placeholders (``ADD #a :a, #b :b``; what every rollup update is), with no
   condition, is applied directly, with moto's own number addition, instead of through
   moto's expression parser and its ten validating passes over the syntax tree
   (see _add_numbers_directly). Anything else goes to moto's code unchanged.
8. An update expression's syntax tree is parsed once per distinct expression text (moto
   parses it again for every update, in the handler and in the backend) and shared:
   its users only read it, and the one that rewrites it deep-copies it first
   (see _cache_update_expression_parses).
9. A condition expression is parsed once per distinct (text, names, values) and the parsed
   condition shared (moto parses it up to three times per conditional put; see
   _cache_condition_expression_parses).
10. Items are built in one pass instead of re-summing their size for every attribute set,
   with short texts interned, and the direct ADD of point 7 keeps the item's size the
   same way (see _build_items_in_linear_time).
11. DynamoDB attribute values and items (``DynamoType``, ``Item``) are not added to moto's
   list of every model instance ever created (``BaseModel.__new__`` appends each one to
   ``instances_tracked``, read only by the ``/moto-api/data.json`` dashboard): every
   value a request parsed, every copy a query returned and every number an ADD replaced
   stayed in memory for the server's life (see _untrack_dynamodb_values).

moto's conditions, cancellation reasons and error codes are its own code, unchanged.
The patched functions are fingerprinted: if the installed moto's sources differ from the
ones this was written and tested against, the launcher refuses to start.
Tests: ``infra/local/test-moto.sh`` runs the same cases against plain moto and this.
"""

from __future__ import annotations

import copy
import hashlib
import inspect
import re
import sys
import threading
from typing import Any, Callable, Optional

# sha256 of inspect.getsource() of every moto function whose behaviour the patch relies on:
# the method wrapped, the paths by which a transaction mutates items (they only assign or
# pop entries of Table.items, update items in place, and append to the stream shard) and
# the request entry point the lock wraps. Update with the moto pin after re-reading them.
EXPECTED_MOTO_VERSION = "5.1.22"
EXPECTED_SOURCES = {
    "DynamoDBBackend.transact_write_items": "3a9f7a1146212d0ebb7c6d098e34e6471311b20cfcd72042140bb6b711fea3e6",
    "DynamoDBBackend.update_item": "745c228be037e6051066e7e4404bb81d540dfaa09ee7caac15a9f12b246389d3",
    "DynamoDBBackend.put_item": "89048c38e19bfc32147318297868110e92e217f550aabbaf8fc20d008fa38d7b",
    "DynamoDBBackend.delete_item": "85607f095bebe091a64856d37f4e488904d7172fb77f75aaddb382985c40c03c",
    "Table.put_item": "b1415823090d7cf18d41f6ae62d909258971576d57769ed800847e0fb5e7ddda",
    "Table.get_item": "6eb18d03689f13c212def65984ba6059b540c3118833020b881c9e217f1481e2",
    "Table.delete_item": "6bce29bdcc7a3ac29650a608c6b989d3d307c0252d8766d872677f5d67616e1b",
    "Table.query": "f3a81893dba4dda5d088d24a34c9e36b246690f340fd2d858a3698adb7191b03",
    "Table.all_items": "c80d2ee3c896acd0cab6ca35aaeae3ab3fb65858933f8a3403d4e027c240f31d",
    "DynamoHandler.call_action": "f8614d10df56bebd54c4e13c860c0b04464d9bdf015e10f29d6055980d9dc244",
    # Per-request lookups of static data that the launcher caches (point 4 of the docstring).
    "backends.list_of_moto_modules": "4f741a10b06500e840c3aaa1b4f02706e6f2bfbababc0e8a2a7b9c9d0e8957dc",
    "utils.method_names_from_class": "9dbac89d082b655fee902c450e69de9dbadf9699ad06411298494984b55138c3",
    "DomainDispatcherApplication.get_backend_for_host": "bc1b7e2ff4188517163b7a54f6bab1a18908013352a30ffb443b381143d2d34b",
    "BaseResponse.call_action": "02cc20502008445de148bbe8cccc2d75e0a2a824f1774b4df3daa20dab37a30e",
    # IAM enforcement (point 6): the entry point replaced, the request it builds, and
    # where a request's body is read (the raw bytes of a form are kept for the signature).
    "BaseResponse.setup_class": "7944b39df82c17c8a41268bcd190ab213b1fcad29debf5399fa4c6946e46e3e9",
    "ActionAuthenticatorMixin._authenticate_and_authorize_normal_action": "eaa6fd7174850bcbac48e22c254b2b09b7117bd6a9e1d4e3425248615c47d065",
    "ActionAuthenticatorMixin._authenticate_and_authorize_action": "daa1539e2a678806e39e52c85becfed78864fbef5a618c45c66b08684a55a559",
    "IAMRequestBase.__init__": "b606a83700ae8354cab640be29270be640866158b28387b651d5dc115344ee4e",
    "IAMRequestBase.check_action_permitted": "c4cad2131aeeec99d9da35c654c8f33ef81ccb2051470eb8a1b3178f1ada1b24",
    # The direct ADD of numbers (point 7) does what these do for that one expression form.
    "AddExecutor.execute": "ad0cd24d9074fec27e7208102197c5cd90ca1938f9953161355b680177a5509d",
    "SetExecutor.set": "b9965c90189b83fe98a4487180b428827fff8217037b52f240aa1808b4b7d0e6",
    "DynamoType.__add__": "4bec6188c994e1e4e7ca6bc50e9c3f6ef165f4355127d26ce707bac5d3012aa4",
    "LimitedSizeDict.__setitem__": "d979580fdbe14f79f3216564e1385c4b3485db82bc88193326c467a037331e81",
    "UpdateExpressionValidator.get_ast_processors": "918400bbecd67e8321619b3141e6a276e91a5112c8e8b602fbbc748d83329af6",
    # The shared parse (point 8): the parser, and every user of its tree (they read it;
    # the validator deep-copies it before rewriting it).
    "UpdateExpressionParser.make": "2c00ed96d6e191f243b449166e75bfb38f307b2e19405bc0981847061e0dbee3",
    "Validator.__init__": "9489b532dd0fb359e273711c1a67971f1b73af47ddbaa91868e9cc42a26ddbb3",
    "DynamoHandler.transact_write_items": "5efd460ed89a7cfc7d3f7d7bf7c06b773a31ba51ea404364f0ce40582fee924f",
    "DynamoHandler.update_item": "8320bc8c57319e632563ad04fbe125259a9ceb377988ce5da877b1fdcb388ea4",
    # The shared condition parse (point 9): the parser whose answers are cached, and the
    # nodes it builds (only their constructors assign attributes).
    "ConditionExpressionParser.parse": "7e9bde95f65f2bfaf9cd34251ad24cf94e2f2521ec324cff1d6e31e6d8d74062",
    "ConditionExpressionParser.__init__": "485530e34fad0d6498e00aa62870a19ecec6fd51ef0dd872b30dbe49551c1b16",
    "Op.__init__": "d87e6260aeb3e51c2e9513ae3c79dca62d0a0e4be2b60315c62416fb4374f740",
    "Func.__init__": "127f449554bc21a54b059d3192b929bba4d556046cbd0a27e46e5a542b195ec3",
    # Items built without the quadratic size check (point 10).
    "Item.__init__": "a307e932656a549f88378e5b18e6fc87070f4e415b143acd1c47369cba1dcbdf",
    "DynamoType.size": "f7c111fca25b4c5ecea8b4d570d210aef1dcf5b9c52fa3250a27f1bfdd85966b",
    # Values and items not tracked (point 11): the tracking constructor, the metaclass that
    # gives each model class its list, and the reset that empties the lists.
    "BaseModel.__new__": "08cf0ef20e88029a2eb91949492ce3281001a34b98143db186239962ad379eec",
    "InstanceTrackerMeta.__new__": "bee162e12b56986ce029664fd87c4dc5ce76de919f732a86bc665911539d68ee",
    "model_instances.reset_model_data": "4a510e716295498976f53e61a8982c0f2834f352341149a3dbbb649292153ed1",
}


class IncompatibleMoto(RuntimeError):
    """The installed moto is not the one the patch was written against."""


# moto's own functions, as they were before apply_patch() replaced two of them.
_originals: dict[str, Any] = {}


def _targets() -> dict[str, Any]:
    from moto import backends
    from moto.core import responses, utils
    from moto.core.authorization import ActionAuthenticatorMixin
    from moto.dynamodb.models import DynamoDBBackend
    from moto.iam.access_control import IAMRequestBase
    from moto.dynamodb.models.dynamo_type import DynamoType, LimitedSizeDict
    from moto.dynamodb.models.table import Table
    from moto.dynamodb.parsing.executors import AddExecutor, SetExecutor
    from moto.dynamodb.parsing.validators import UpdateExpressionValidator
    from moto.dynamodb.responses import DynamoHandler
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication

    from moto.dynamodb.comparisons import ConditionExpressionParser, Func, Op
    from moto.dynamodb.models.dynamo_type import Item
    from moto.dynamodb.parsing.expressions import UpdateExpressionParser
    from moto.dynamodb.parsing.validators import Validator

    from moto.core import model_instances
    from moto.core.base_backend import InstanceTrackerMeta
    from moto.core.common_models import BaseModel

    current = {
        "BaseModel.__new__": BaseModel.__new__,
        "InstanceTrackerMeta.__new__": InstanceTrackerMeta.__new__,
        "model_instances.reset_model_data": model_instances.reset_model_data,
        "ConditionExpressionParser.parse": ConditionExpressionParser.parse,
        "ConditionExpressionParser.__init__": ConditionExpressionParser.__init__,
        "Op.__init__": Op.__init__,
        "Func.__init__": Func.__init__,
        "Item.__init__": Item.__init__,
        "DynamoType.size": DynamoType.size,
        "UpdateExpressionParser.make": UpdateExpressionParser.make,
        "Validator.__init__": Validator.__init__,
        "DynamoHandler.transact_write_items": DynamoHandler.transact_write_items,
        "DynamoHandler.update_item": DynamoHandler.update_item,
        "AddExecutor.execute": AddExecutor.execute,
        "SetExecutor.set": SetExecutor.set,
        "DynamoType.__add__": DynamoType.__add__,
        "LimitedSizeDict.__setitem__": LimitedSizeDict.__setitem__,
        "UpdateExpressionValidator.get_ast_processors": UpdateExpressionValidator.get_ast_processors,
        "DynamoDBBackend.transact_write_items": DynamoDBBackend.transact_write_items,
        "DynamoDBBackend.update_item": DynamoDBBackend.update_item,
        "DynamoDBBackend.put_item": DynamoDBBackend.put_item,
        "DynamoDBBackend.delete_item": DynamoDBBackend.delete_item,
        "Table.put_item": Table.put_item,
        "Table.get_item": Table.get_item,
        "Table.delete_item": Table.delete_item,
        "Table.query": Table.query,
        "Table.all_items": Table.all_items,
        "DynamoHandler.call_action": DynamoHandler.call_action,
        "backends.list_of_moto_modules": backends.list_of_moto_modules,
        "utils.method_names_from_class": utils.method_names_from_class,
        "DomainDispatcherApplication.get_backend_for_host": DomainDispatcherApplication.get_backend_for_host,
        "BaseResponse.call_action": responses.BaseResponse.call_action,
        "ActionAuthenticatorMixin._authenticate_and_authorize_normal_action": (
            ActionAuthenticatorMixin._authenticate_and_authorize_normal_action
        ),
        "ActionAuthenticatorMixin._authenticate_and_authorize_action": (
            ActionAuthenticatorMixin._authenticate_and_authorize_action
        ),
        "IAMRequestBase.__init__": IAMRequestBase.__init__,
        "BaseResponse.setup_class": responses.BaseResponse.setup_class,
        "IAMRequestBase.check_action_permitted": IAMRequestBase.check_action_permitted,
    }
    return {**current, **_originals}


def source_fingerprints() -> dict[str, str]:
    return {
        name: hashlib.sha256(inspect.getsource(fn).encode()).hexdigest()
        for name, fn in _targets().items()
    }


def check_moto(expected: Optional[dict[str, str]] = None) -> None:
    """Raises IncompatibleMoto unless moto's patched internals are the expected ones."""
    import moto
    from moto.dynamodb.models.table import Table

    expected = EXPECTED_SOURCES if expected is None else expected
    problems = []
    if moto.__version__ != EXPECTED_MOTO_VERSION:
        problems.append(f"moto {moto.__version__} installed, patch written for {EXPECTED_MOTO_VERSION}")
    actual = source_fingerprints()
    for name, digest in expected.items():
        if actual.get(name) != digest:
            problems.append(f"{name} changed (sha256 {actual.get(name)}, expected {digest})")
    if "__deepcopy__" in vars(Table) and not getattr(Table.__deepcopy__, "_moto_launcher", False):
        problems.append("Table defines its own __deepcopy__")
    if problems:
        raise IncompatibleMoto(
            "moto_launcher: refusing to patch moto; re-read the functions below against "
            "infra/local/moto_launcher.py and docs/adr/0008-local-emulator.md, then update "
            "EXPECTED_SOURCES:\n  " + "\n  ".join(problems)
        )


class _InTransaction(threading.local):
    active = False


_in_transaction = _InTransaction()


def _table_deepcopy(self: Any, memo: dict[int, Any]) -> Any:
    if _in_transaction.active:
        # moto's backup of this table: the journal keeps the touched items instead.
        return self
    # Everywhere else (backups, restores) exactly what copy.deepcopy does by default.
    return copy._reconstruct(self, memo, *self.__reduce_ex__(4))  # type: ignore[attr-defined]


_table_deepcopy._moto_launcher = True  # type: ignore[attr-defined]


class _Journal:
    """The items a TransactWriteItems call names, as they were before it ran."""

    def __init__(self) -> None:
        # (table, hash DynamoType, range DynamoType or None, deep copy of item or None,
        #  whether the hash bucket existed)
        self.items: list[tuple[Any, Any, Any, Any, bool]] = []
        self.streams: list[tuple[Any, int]] = []

    @classmethod
    def before(cls, backend: Any, transact_items: list[dict[str, Any]]) -> "_Journal":
        from moto.dynamodb.models.dynamo_type import DynamoType

        journal = cls()
        seen: set[tuple[int, Any, Any]] = set()
        for entry in transact_items:
            for op_type, op in entry.items():
                if not isinstance(op, dict):
                    continue
                try:
                    table = backend.get_table(op.get("TableName"))  # a name or an ARN
                except Exception:
                    continue  # moto cancels an operation on a missing table
                key = op.get("Item") if op_type == "Put" else op.get("Key")
                if not isinstance(key, dict) or table.hash_key_attr not in key:
                    continue  # moto fails this operation before writing anything
                try:
                    hash_key = DynamoType(key[table.hash_key_attr])
                    range_key = None
                    if table.range_key_attr is not None:
                        if table.range_key_attr not in key:
                            continue  # same: moto rejects it before writing
                        range_key = DynamoType(key[table.range_key_attr])
                except Exception:
                    continue  # a key moto cannot build either; it cannot be written
                marker = (id(table), hash_key, range_key)
                if marker in seen:
                    continue
                seen.add(marker)
                bucket_existed = hash_key in table.items
                if range_key is None:
                    current = table.items.get(hash_key)
                else:
                    current = table.items[hash_key].get(range_key) if bucket_existed else None
                journal.items.append(
                    (table, hash_key, range_key, copy.deepcopy(current), bucket_existed)
                )
                shard = table.stream_shard
                if shard is not None and all(s is not shard for s, _ in journal.streams):
                    journal.streams.append((shard, len(shard.items)))
        return journal

    def restore(self) -> None:
        for table, hash_key, range_key, before, bucket_existed in reversed(self.items):
            if range_key is None:
                if before is None:
                    table.items.pop(hash_key, None)
                else:
                    table.items[hash_key] = before
                continue
            if before is None:
                bucket = table.items.get(hash_key)
                if bucket is not None:
                    bucket.pop(range_key, None)
                    if not bucket and not bucket_existed:
                        del table.items[hash_key]
            else:
                table.items[hash_key][range_key] = before
        for shard, length in self.streams:
            del shard.items[length:]


_dynamodb_lock = threading.RLock()


def apply_patch() -> None:
    """Checks moto, then installs the item journal and the DynamoDB request lock."""
    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.models.table import Table
    from moto.dynamodb.responses import DynamoHandler

    if getattr(DynamoDBBackend.transact_write_items, "_moto_launcher", False):
        return
    check_moto()
    original_transact: Callable[..., None] = DynamoDBBackend.transact_write_items
    original_call_action: Callable[..., Any] = DynamoHandler.call_action

    def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
        journal = _Journal.before(self, transact_items)
        _in_transaction.active = True
        try:
            original_transact(self, transact_items)
        except BaseException:
            journal.restore()
            raise
        finally:
            _in_transaction.active = False

    def call_action(self: Any) -> Any:
        with _dynamodb_lock:
            return original_call_action(self)

    _originals["DynamoDBBackend.transact_write_items"] = original_transact
    _originals["DynamoHandler.call_action"] = original_call_action
    transact_write_items._moto_launcher = True  # type: ignore[attr-defined]
    transact_write_items.__doc__ = original_transact.__doc__
    _cache_static_lookups()
    _query_one_partition()
    _add_numbers_directly()
    _cache_update_expression_parses()
    _cache_condition_expression_parses()
    _build_items_in_linear_time()
    _untrack_dynamodb_values()
    Table.__deepcopy__ = _table_deepcopy  # type: ignore[attr-defined]
    DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]
    DynamoHandler.call_action = call_action  # type: ignore[method-assign]


def _cache_static_lookups() -> None:
    """Point 4: answers that cannot change while the server runs, computed once.

    moto lists its own package directory (about 50 `stat` calls) to route every request
    (`get_backend_for_host` -> `backends.list_of_moto_modules`), and lists a response
    class's methods with `inspect.getmembers` on every call (`BaseResponse.call_action`
    -> `method_names_from_class`). Installed modules and classes are fixed for the
    server's life, so the cached answers are the same; together they were ~20-35 % of
    the server's CPU per PutItem.
    """
    import functools

    from moto import backends
    from moto.core import responses, utils

    _originals["backends.list_of_moto_modules"] = backends.list_of_moto_modules
    _originals["utils.method_names_from_class"] = utils.method_names_from_class
    modules = tuple(backends.list_of_moto_modules())
    backends.list_of_moto_modules = lambda: modules  # type: ignore[assignment]
    responses.method_names_from_class = functools.lru_cache(maxsize=None)(  # type: ignore[attr-defined]
        utils.method_names_from_class
    )


def _query_one_partition() -> None:
    """Point 5: `Table.query` without an index lists candidates as
    `[item for item in self.all_items() if item.hash_key == hash_key]`, and `all_items()`
    builds and sorts a list of every item in the table: each Query costs O(table). While
    such a query runs, `all_items` answers with the named partition only (sorted the same
    way: one hash key, so by range key), so moto's own code sees exactly the items its
    filter would have kept. Index queries keep moto's full scan. Safe because DynamoDB
    requests are served one at a time (point 3) and the override is removed afterwards.
    """
    from moto.dynamodb.models.dynamo_type import Item
    from moto.dynamodb.models.table import Table

    original_query = Table.query
    _originals["Table.query"] = original_query

    def query(self: Any, hash_key: Any, *args: Any, **kwargs: Any) -> Any:
        index_name = kwargs.get("index_name", args[6] if len(args) > 6 else None)
        if index_name or hash_key is None or "all_items" in vars(self):
            return original_query(self, hash_key, *args, **kwargs)
        bucket = self.items.get(hash_key)
        if bucket is None:
            partition: list[Any] = []
        elif self.range_key_attr:
            partition = sorted(bucket.values(), key=lambda item: item.range_key)
        else:
            partition = [bucket] if isinstance(bucket, Item) else []
        self.all_items = lambda: list(partition)
        try:
            return original_query(self, hash_key, *args, **kwargs)
        finally:
            del self.all_items

    query._moto_launcher = True  # type: ignore[attr-defined]
    Table.query = query  # type: ignore[method-assign]


_ADD_ACTION = re.compile(r"(#[A-Za-z0-9_]+)\s+(:[A-Za-z0-9_]+)")
_NUMBER = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?")


def add_only_actions(update_expression: Any) -> Optional[list[tuple[str, str]]]:
    """The (name placeholder, value placeholder) pairs of ``ADD #a :a, #b :b...``, or None
    when the expression is anything else (other clauses, paths, functions, literals)."""
    if not isinstance(update_expression, str):
        return None
    text = update_expression.strip()
    if not text[:4].upper() == "ADD " and not text[:4].upper() == "ADD\t":
        return None
    actions = []
    for part in text[4:].split(","):
        m = _ADD_ACTION.fullmatch(part.strip())
        if m is None:
            return None
        actions.append((m.group(1), m.group(2)))
    return actions or None


def _cache_update_expression_parses() -> None:
    """Point 8: ``UpdateExpressionParser.make`` tokenizes and parses an update
    expression into a syntax tree, twice per update (the handler, to list the
    placeholders used; the backend, to validate and execute), ~17 % of the server's CPU
    during an import even with point 7. The rollup sends a few hundred distinct texts.
    The tree is read-only for every caller (``find_clauses`` and getters in the
    handler; ``Validator.__init__`` deep-copies it before its processors rewrite the
    copy), so one parse per text gives the same answers. Parse errors are not cached
    (raised again each time, as before).
    """
    import functools

    from moto.dynamodb.parsing.expressions import UpdateExpressionParser

    original_make = UpdateExpressionParser.make
    _originals["UpdateExpressionParser.make"] = original_make
    cached = functools.lru_cache(maxsize=4096)(original_make)

    def make(cls: Any, expression_str: Any) -> Any:
        if not isinstance(expression_str, str):
            return original_make(expression_str)
        return cached(expression_str)

    make._moto_launcher = True  # type: ignore[attr-defined]
    make.cache_info = cached.cache_info  # type: ignore[attr-defined]
    UpdateExpressionParser.make = classmethod(make)  # type: ignore[method-assign,assignment]


def frozen_json(value: Any) -> Any:
    """A hashable copy of JSON data (dicts with text keys, lists, texts, numbers,
    booleans, None) that tells apart every two values that differ, types included;
    TypeError for anything else."""
    kind = type(value)
    if value is None or kind in (str, int, float, bool):
        return (kind.__name__, value)
    if kind is dict:
        if not all(type(k) is str for k in value):
            raise TypeError("a key that is not a text")
        return ("dict", tuple(sorted((k, frozen_json(v)) for k, v in value.items())))
    if kind is list:
        return ("list", tuple(frozen_json(v) for v in value))
    raise TypeError(f"not JSON data: {kind.__name__}")


def _cache_condition_expression_parses() -> None:
    """Point 9: moto parses a condition expression (lexer, path, function, comparator
    and boolean passes) up to three times per conditional put in a transaction (the
    handler, to list the names used; the transaction's own check; the table's put),
    about a third of the server's CPU during an import: every claim and part marker is
    ``attribute_not_exists(pk)``. The parse is a function of the expression, its names
    and its values; the tree it returns is only read (its nodes assign attributes in
    their constructors only), so one parse per distinct (expression, names, values)
    gives the same answers. The lists of names and values found, which callers read from
    the parser, are set as the parse sets them. Errors are not cached (raised every
    time); names or values that are not JSON data are parsed each time. At most 4,096
    entries are kept (all are dropped when full).
    """
    from moto.dynamodb.comparisons import ConditionExpressionParser

    original_parse = ConditionExpressionParser.parse
    _originals["ConditionExpressionParser.parse"] = original_parse
    cache: dict[Any, tuple[Any, tuple[str, ...], tuple[str, ...]]] = {}
    counts = {"hits": 0, "misses": 0}

    def parse(self: Any) -> Any:
        expression = self.condition_expression
        try:
            key = (
                expression,
                frozen_json(self.expression_attribute_names),
                frozen_json(self.expression_attribute_values),
            )
        except TypeError:
            key = None
        if not isinstance(expression, str) or not expression or key is None:
            return original_parse(self)
        found = cache.get(key)
        if found is None:
            counts["misses"] += 1
            op = original_parse(self)  # raises (uncached) on a bad expression
            if len(cache) >= 4096:
                cache.clear()
            cache[key] = (op, tuple(self.expr_attr_names_found), tuple(self.expr_attr_values_found))
            return op
        counts["hits"] += 1
        op, names_found, values_found = found
        self.expr_attr_names_found.extend(names_found)
        self.expr_attr_values_found.extend(values_found)
        return op

    parse._moto_launcher = True  # type: ignore[attr-defined]
    parse.counts = counts  # type: ignore[attr-defined]
    ConditionExpressionParser.parse = parse  # type: ignore[method-assign]


def _build_items_in_linear_time() -> None:
    """Point 10: ``Item.__init__`` sets each attribute through ``LimitedSizeDict``,
    whose ``__setitem__`` re-sums the size of every attribute already set: building an
    item is quadratic in its attributes (~15 % of the server's CPU). Built here in one
    pass with the same answer: attributes are set in order into an empty dict, sizes
    are non-negative, so moto's check fails at some attribute exactly when the sum of
    every key's and value's size exceeds its limit, and raises the same error.
    """
    from moto.dynamodb.models.dynamo_type import DynamoType, Item, ItemSizeTooLarge, LimitedSizeDict
    from moto.dynamodb.models.utilities import bytesize

    _originals["Item.__init__"] = Item.__init__
    intern = sys.intern

    def item_init(self: Any, hash_key: Any, range_key: Any, attrs: dict[str, Any]) -> None:
        self.hash_key = hash_key
        self.range_key = range_key
        built = LimitedSizeDict.__new__(LimitedSizeDict)
        dict.__init__(built)
        total = 0
        for key, value in attrs.items():
            typed = DynamoType(value)
            if typed.type == "S" and type(typed.value) is str and len(typed.value) <= 64:
                typed.value = intern(typed.value)
            elif typed.type == "M":
                for child in typed.value.values():
                    if child.type == "S" and type(child.value) is str and len(child.value) <= 64:
                        child.value = intern(child.value)
            total += bytesize(str(key)) + typed.size()
            if total > 405000:
                raise ItemSizeTooLarge
            dict.__setitem__(built, key, typed)
        self.attrs = built

    item_init._moto_launcher = True  # type: ignore[attr-defined]
    Item.__init__ = item_init  # type: ignore[method-assign]


def _untrack_dynamodb_values() -> None:
    """Point 11: moto's ``BaseModel.__new__`` appends every instance of every model class
    to the class's ``instances_tracked`` list, kept until ``/moto-api/reset`` and read
    only by the dashboard's ``/moto-api/data.json``. ``DynamoType`` (one per attribute
    value, nested ones included) and ``Item`` are model classes, so every value ever
    built stayed reachable: the values parsed from each request, the deep copies a Query
    returns (moto copies each page before serialising it), the journal's copies, each
    number an ``ADD`` replaced. A full-partition query of 200 rollup items kept ~1.4 MB;
    the score job's reads grew the server by 400 MB. These two classes are built without
    the append (what ``BaseModel.__new__`` does otherwise: ``object.__new__``); stored
    items stay reachable through their tables as before. Every other model class is
    tracked as before; the dashboard lists no ``DynamoType``/``Item`` instances.
    """
    from moto.dynamodb.models.dynamo_type import DynamoType, Item

    def untracked_new(cls: Any, *args: Any, **kwargs: Any) -> Any:
        return object.__new__(cls)

    untracked_new._moto_launcher = True  # type: ignore[attr-defined]
    for cls in (DynamoType, Item):
        cls.__new__ = staticmethod(untracked_new)  # type: ignore[assignment,method-assign]
        cls.instances_tracked = []  # type: ignore[attr-defined]


def _add_numbers_directly() -> None:
    """Point 7: moto applies ``ADD #q :q`` by parsing the expression (tokenizer and
    recursive parser), deep-copying the syntax tree and walking it with ten processors
    (~2 ms of CPU per update, three quarters of the server's time during an import).
    For the one form the rollup writes, the result is known without the tree: for each
    action in order, the attribute becomes ``existing + value`` (moto's own
    ``DynamoType.__add__``; a missing attribute counts as 0), set through the item's
    ``LimitedSizeDict`` (moto's size check). The direct path is taken only when moto's
    validation would pass and its execution would do exactly that: no condition, no
    ``Expected``/``AttributeUpdates``, every placeholder defined, every value a plain
    number literal, every name distinct, not a key of the table or of an index, and
    every existing attribute it adds to a number. Otherwise moto's code runs unchanged
    (and raises its own errors).
    """
    from moto.dynamodb.exceptions import ItemSizeToUpdateTooLarge
    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.models.dynamo_type import DynamoType, Item
    from moto.dynamodb.models.utilities import bytesize

    original_update_item = DynamoDBBackend.update_item
    _originals["DynamoDBBackend.update_item"] = original_update_item

    def plan(
        table: Any, key: Any, update_expression: Any, names: Any, values: Any
    ) -> Optional[tuple[Any, Any, list[tuple[str, Any]]]]:
        actions = add_only_actions(update_expression)
        if actions is None or not isinstance(names, dict) or not isinstance(values, dict):
            return None
        if not isinstance(key, dict) or len(key) != (2 if table.range_key_attr else 1):
            return None
        if table.hash_key_attr not in key or (table.range_key_attr and table.range_key_attr not in key):
            return None
        protected = set(table.attribute_keys) | {a["AttributeName"] for a in table.attr}
        adds = []
        seen = set()
        for name_ph, value_ph in actions:
            name = names.get(name_ph)
            value = values.get(value_ph)
            if not isinstance(name, str) or not name or name in protected or name in seen:
                return None
            if not isinstance(value, dict) or list(value) != ["N"]:
                return None
            if not isinstance(value["N"], str) or not _NUMBER.fullmatch(value["N"]):
                return None
            seen.add(name)
            adds.append((name, DynamoType(value)))
        try:
            hash_value = DynamoType(key[table.hash_key_attr])
            range_value = DynamoType(key[table.range_key_attr]) if table.range_key_attr else None
        except Exception:
            return None
        return hash_value, range_value, adds

    def update_item(
        self: Any,
        table_name: str,
        key: dict[str, Any],
        update_expression: str,
        expression_attribute_names: dict[str, Any],
        expression_attribute_values: dict[str, Any],
        attribute_updates: Optional[dict[str, Any]] = None,
        expected: Optional[dict[str, Any]] = None,
        condition_expression: Optional[str] = None,
        return_values_on_condition_check_failure: Optional[str] = None,
    ) -> Any:
        direct = None
        if not attribute_updates and not expected and condition_expression is None:
            table = self.get_table(table_name)
            direct = plan(table, key, update_expression, expression_attribute_names, expression_attribute_values)
        if direct is not None:
            hash_value, range_value, adds = direct
            item = table.get_item(hash_value, range_value)
            if item is None or all(
                name not in item.attrs or item.attrs[name].is_number() for name, _ in adds
            ):
                return _apply_adds(table, item, hash_value, range_value, adds)
        return original_update_item(
            self,
            table_name,
            key,
            update_expression,
            expression_attribute_names,
            expression_attribute_values,
            attribute_updates,
            expected,
            condition_expression,
            return_values_on_condition_check_failure,
        )

    def _apply_adds(table: Any, item: Any, hash_value: Any, range_value: Any, adds: list[tuple[str, Any]]) -> Any:
        # As moto's update_item: the old item for the stream, a new item holding only its
        # key when absent, each action in expression order, the stream record last.
        orig_item = copy.deepcopy(item) if table.stream_shard is not None else None
        if item is None:
            data = {table.hash_key_attr: {hash_value.type: hash_value.value}}
            if range_value:
                data[table.range_key_attr] = {range_value.type: range_value.value}
            table.put_item(data)
            item = table.get_item(hash_value, range_value)
        zero = DynamoType({"N": "0"})
        attrs = item.attrs
        # moto's LimitedSizeDict.__setitem__ re-sums every key and value of the item for
        # each attribute set (quadratic in a rollup item's ~50 attributes); the sum is
        # kept here instead, with the same terms, the old value of a replaced attribute
        # included as moto counts it until the set.
        size = sum(bytesize(str(k)) + (v.size() if type(v) is DynamoType else bytesize(str(v))) for k, v in attrs.items())
        for name, value in adds:
            new = attrs.get(name, zero) + value
            new_size = new.size()
            if size + bytesize(name) + new_size > 405000:
                raise ItemSizeToUpdateTooLarge()
            old = attrs.get(name)
            size += new_size - (old.size() if old is not None else -bytesize(name))
            dict.__setitem__(attrs, name, new)
        if table.stream_shard is not None:
            table.stream_shard.add(orig_item, item)
        return item

    assert Item is not None
    update_item._moto_launcher = True  # type: ignore[attr-defined]
    update_item.__doc__ = original_update_item.__doc__
    DynamoDBBackend.update_item = update_item  # type: ignore[method-assign]


# Per-item actions AWS checks inside a DynamoDB transaction (moto checks the request's own
# action, TransactWriteItems/TransactGetItems, against "*").
_TRANSACT_ACTIONS = {
    "Put": "dynamodb:PutItem",
    "Update": "dynamodb:UpdateItem",
    "Delete": "dynamodb:DeleteItem",
    "ConditionCheck": "dynamodb:ConditionCheckItem",
    "Get": "dynamodb:GetItem",
}


# SQS has no IAM actions of its own for batch calls: AWS authorises each as its single
# form (SQS Developer Guide, "Amazon SQS batch actions"); moto asks for the batch name.
_SQS_BATCH_ACTIONS = {
    "SendMessageBatch": "sqs:SendMessage",
    "DeleteMessageBatch": "sqs:DeleteMessage",
    "ChangeMessageVisibilityBatch": "sqs:ChangeMessageVisibility",
}


def _table_arn(name: Any, region: str, account: str) -> str:
    if not isinstance(name, str) or not name:
        return "*"
    if name.startswith("arn:"):
        return name
    return f"arn:aws:dynamodb:{region}:{account}:table/{name}"


def dynamodb_checks(action: str, body: Any, region: str, account: str) -> list[tuple[str, str]]:
    """The (IAM action, resource ARN) pairs AWS authorises for one DynamoDB request."""
    if not isinstance(body, dict):
        return [(f"dynamodb:{action}", "*")]
    if action in ("TransactWriteItems", "TransactGetItems"):
        checks = []
        for entry in body.get("TransactItems") or []:
            for op_type, op in (entry.items() if isinstance(entry, dict) else []):
                iam_action = _TRANSACT_ACTIONS.get(op_type, f"dynamodb:{action}")
                table = op.get("TableName") if isinstance(op, dict) else None
                checks.append((iam_action, _table_arn(table, region, account)))
        return checks or [(f"dynamodb:{action}", "*")]
    if action in ("BatchWriteItem", "BatchGetItem"):
        tables = body.get("RequestItems")
        names = list(tables) if isinstance(tables, dict) else []
        return [(f"dynamodb:{action}", _table_arn(n, region, account)) for n in names] or [
            (f"dynamodb:{action}", "*")
        ]
    if "TableName" in body:
        resource = _table_arn(body["TableName"], region, account)
        index = body.get("IndexName")
        if action in ("Query", "Scan") and isinstance(index, str) and index:
            resource = f"{resource}/index/{index}"
        return [(f"dynamodb:{action}", resource)]
    return [(f"dynamodb:{action}", "*")]


def sns_checks(handler: Any, action: str) -> list[tuple[str, str]]:
    """SNS actions against the topic they name (moto: against "*")."""
    topic = handler._get_param("TopicArn") or handler._get_param("TargetArn")
    if not topic and action == "CreateTopic":
        name = handler._get_param("Name")
        topic = f"arn:aws:sns:{handler.region}:{handler.current_account}:{name}" if name else None
    return [(f"sns:{action}", topic if isinstance(topic, str) and topic else "*")]


def secretsmanager_checks(handler: Any, action: str) -> list[tuple[str, str]]:
    """Secrets Manager actions against the secret's full ARN, whether the request names
    it by name, full or partial ARN, as on AWS (moto: against "*", so a policy naming the
    secret's ARN would refuse every read)."""
    secret_id = handler._get_param("SecretId")
    arn: Optional[str] = None
    if isinstance(secret_id, str) and secret_id:
        from moto.secretsmanager.models import secretsmanager_backends

        secret = secretsmanager_backends[handler.current_account][handler.region].secrets.get(secret_id)
        arn = secret.arn if secret is not None else (secret_id if secret_id.startswith("arn:") else None)
    return [(f"secretsmanager:{action}", arn or "*")]


def _access_key_id(authorization: str) -> Optional[str]:
    scope = authorization.partition("Credential=")[2].partition(",")[0]
    return scope.split("/")[0] if scope else None


def enforce_iam(admin_key: str = "testing", log_path: Optional[str] = None) -> None:
    """Point 6: every request but the admin's is checked against moto's IAM, per resource."""
    import json
    import os

    from moto.core.authorization import ActionAuthenticatorMixin
    from moto.core.exceptions import AccessDeniedError
    from moto.iam.access_control import IAMRequest

    if getattr(ActionAuthenticatorMixin._authenticate_and_authorize_normal_action, "_moto_launcher", False):
        return
    _keep_form_bodies()
    _originals["ActionAuthenticatorMixin._authenticate_and_authorize_normal_action"] = (
        ActionAuthenticatorMixin._authenticate_and_authorize_normal_action
    )
    log_lock = threading.Lock()

    def authorise(self: Any, resource: str = "*") -> None:
        authorization = self.headers.get("Authorization") or ""
        if _access_key_id(authorization) == admin_key:
            return
        if not authorization:
            raise AccessDeniedError(user_arn="anonymous", action=self._get_action())
        request = IAMRequest(
            account_id=self.current_account,
            method=self.method,
            path=_request_path(self),
            data=self.data,
            body=getattr(self, "_launcher_form_body", None) or self.raw_body,
            headers=self.headers,
            action=self._get_action(),
        )
        try:
            request.check_signature()
        except Exception:
            print(f"moto_launcher: signature refused for {self._get_action()}", file=sys.stderr, flush=True)
            if os.environ.get("MOTO_LAUNCHER_DEBUG_SIG"):
                auth = request._create_auth(request._access_key.create_credentials())
                print(auth.canonical_request(request._create_aws_request()), file=sys.stderr, flush=True)
            raise
        action = self._get_action()
        service = getattr(self, "service_name", None)
        if service == "dynamodb":
            checks = dynamodb_checks(action, self.body, self.region, self.current_account)
        elif service == "sns":
            checks = sns_checks(self, action)
        elif service == "secretsmanager":
            checks = secretsmanager_checks(self, action)
        elif service == "sqs" and action in _SQS_BATCH_ACTIONS:
            checks = [(_SQS_BATCH_ACTIONS[action], resource)]
        else:
            checks = [(request._action, resource)]
        user = request._access_key.arn
        for n, (iam_action, arn) in enumerate(checks):
            request._action = iam_action
            try:
                request.check_action_permitted(arn)
            except AccessDeniedError:
                print(f"moto_launcher: denied {user} {iam_action} on {arn}", file=sys.stderr, flush=True)
                record(user, action, checks[:n], (iam_action, arn))
                raise AccessDeniedError(user_arn=user, action=f"{iam_action} on resource: {arn}")
        record(user, action, checks, None)

    def record(
        user: str, operation: str, permitted: list[tuple[str, str]], denied: Optional[tuple[str, str]]
    ) -> None:
        if not log_path:
            return
        entries = [
            {"user": user, "operation": operation, "action": a, "resource": r, "allowed": True} for a, r in permitted
        ]
        if denied is not None:
            entries.append(
                {"user": user, "operation": operation, "action": denied[0], "resource": denied[1], "allowed": False}
            )
        lines = "".join(json.dumps(e) + "\n" for e in entries)
        with log_lock, open(log_path, "a", encoding="utf-8") as out:
            out.write(lines)

    authorise._moto_launcher = True  # type: ignore[attr-defined]
    ActionAuthenticatorMixin._authenticate_and_authorize_normal_action = authorise  # type: ignore[method-assign]


def _keep_form_bodies() -> None:
    """The bytes a form-encoded (query protocol: SNS, IAM) request was signed over.

    werkzeug parses such a body into ``request.form`` and moto's ``raw_body`` is then
    empty, so moto's signature check re-encodes the parsed form with Python's encoder.
    The Rust SDK encodes differently (``%20``, not ``+``), so a message with a space
    fails the check. Read the bytes first (werkzeug caches them and parses the form
    from the cache) and give them to the check.
    """
    from moto.core import responses

    original_setup_class = responses.BaseResponse.setup_class

    def setup_class(self: Any, request: Any, *args: Any, **kwargs: Any) -> None:
        content_type = getattr(request, "content_type", None) or ""
        if (
            content_type.startswith("application/x-www-form-urlencoded")
            and hasattr(request, "get_data")
            and "form" not in vars(request)
        ):
            self._launcher_form_body = request.get_data(cache=True, parse_form_data=False)
        return original_setup_class(self, request, *args, **kwargs)

    _originals["BaseResponse.setup_class"] = original_setup_class
    responses.BaseResponse.setup_class = setup_class  # type: ignore[method-assign]


def _request_path(handler: Any) -> str:
    """The path and query moto's own check signs (as _authenticate_and_authorize_action)."""
    from urllib.parse import urlparse

    parsed = urlparse(handler.uri)
    return parsed.path + (f"?{parsed.query}" if parsed.query else "")


def main(argv: Optional[list[str]] = None) -> None:
    import os

    try:
        apply_patch()
        if os.environ.get("MOTO_LAUNCHER_IAM") == "1":
            enforce_iam(
                admin_key=os.environ.get("MOTO_LAUNCHER_ADMIN_KEY") or "testing",
                log_path=os.environ.get("MOTO_LAUNCHER_IAM_LOG") or None,
            )
    except IncompatibleMoto as err:
        print(err, file=sys.stderr)
        sys.exit(3)
    from moto.server import main as moto_main

    moto_main(argv if argv is not None else sys.argv[1:])


if __name__ == "__main__":
    main()
