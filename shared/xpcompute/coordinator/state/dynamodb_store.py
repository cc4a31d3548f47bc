"""The AWS state store: one DynamoDB table, conditional writes through ``ConditionExpression``.

Single-table layout: an analysis is ``pk=A#<analysis_id>, sk=A``; its jobs
share the partition with ``sk=J#<job_id>``, so listing an analysis's jobs is
one Query. A sparse global secondary index ``by_state_keys`` (``st``, ``due``)
holds only what the coordinator polls: ready PENDING jobs per priority
(``due`` = due_at, the next dispatch time), RUNNING jobs (``due`` = lease expiry) and analyses by
state. The record itself is a JSON ``body`` attribute, so adding a field needs
no migration.

The index projects the keys only (``KEYS_ONLY``: ``pk``, ``sk``, ``st``, ``due``). A query is charged by the
size of the index entries it reads, whatever its ``ProjectionExpression`` says, so an index projecting ``ALL``
charged the due-jobs query for whole job items (1.25 KB for a pending fit job) when it needs 90 bytes of keys
(``benchmarks/scaling_model.py``: one dispatch batch with 3,000 due reads 72 KB of keys, 9.5 read units,
where it read 3.0 MB, 366 units). Every
index query reads keys, and whatever needs the record reads it from the table by key (``BatchGetItem``,
consistent: the index is eventually consistent, so the table's copy decides the state anyway): ``due_jobs``
reads the ``limit`` jobs it chose, ``expired_jobs`` the ``limit`` expired ones, ``list_analyses(state)`` the
analyses. Nothing needs a non-key attribute from the index (priority is in ``st``, analysis and job ids in
``pk``/``sk``), so ``INCLUDE``, which needs at least one, would only add bytes.

Migrating a deployed table (the index was ``by_state``, projecting ``ALL``): a GSI's projection cannot be
changed in place, and DynamoDB creates or deletes one GSI per table update. So ``serverless.yml`` keeps
``by_state`` beside the new ``by_state_keys`` for one deploy, which adds ``by_state_keys`` (CloudFormation
starts its backfill). Until it can be read, the index queries answer from ``by_state`` (``_index_keys``: a
``ValidationException``, as for an index still backfilling or missing, retries on the old one, and a failure
there reports the new index's error). Once ``aws dynamodb describe-table`` shows ``by_state_keys`` ACTIVE,
delete the ``by_state`` entry from ``serverless.yml`` (and its ARN in the IAM statement) and deploy again:
CloudFormation drops the old index; until then every job write also writes its whole item to ``by_state``.

Per-analysis job counters: ``pk=A#<analysis_id>, sk=C`` holds one number per
job state (``n_PENDING``, ...). Every write that creates a job or changes its
state is one ``TransactWriteItems`` of the conditional job write and an
``ADD`` to the counter, so the counter moves exactly when the job does, and
``job_counts`` (asked after every finished job) reads one item instead of every
job of the analysis. The counter is created with the analysis (``complete``);
an analysis stored before counters existed has none, and is recounted.

This module is the only coordinator code that touches boto3's DynamoDB
client; provider errors become ``StorageError``/``ConflictError`` here.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from decimal import Decimal
from typing import Any

import boto3
from boto3.dynamodb.conditions import Attr, Key
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from xpcompute.coordinator.jobs import (
    PRIORITIES,
    Analysis,
    AnalysisState,
    Job,
    JobState,
)
from xpcompute.coordinator.state.fair import DueKey, fair_order
from xpcompute.errors import ConflictError, NotFoundError, StorageError

INDEX = "by_state_keys"
#: the index before ``by_state_keys`` (projecting ``ALL``): no longer read; ``serverless.yml`` keeps it for the
#: deploy that adds the new one (see the module docstring)
LEGACY_INDEX = "by_state"
COUNTER_SK = "C"
#: due-job keys ``due_jobs`` reads per priority class: ``DUE_WINDOW_FACTOR`` x the jobs it still needs, at least
#: ``DUE_WINDOW_MIN``, at most ``DUE_SCAN_MAX`` (``due_window``; why that is enough: ``due_jobs``)
DUE_WINDOW_FACTOR = 4
DUE_WINDOW_MIN = 100
DUE_SCAN_MAX = 2_000


def due_window(limit: int) -> int:
    """How many of a class's oldest due keys ``due_jobs`` reads to choose ``limit`` jobs from that class."""
    return min(DUE_SCAN_MAX, max(limit * DUE_WINDOW_FACTOR, DUE_WINDOW_MIN))


def table_definition(name: str) -> dict[str, Any]:
    """``CreateTable`` arguments; ``serverless.yml`` declares the same table for AWS (plus, for one deploy, the
    ``LEGACY_INDEX`` a table created before ``by_state_keys`` has)."""
    return {
        "TableName": name,
        "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": [
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
            {"AttributeName": "st", "AttributeType": "S"},
            {"AttributeName": "due", "AttributeType": "N"},
        ],
        "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        "GlobalSecondaryIndexes": [
            {
                "IndexName": INDEX,
                "KeySchema": [{"AttributeName": "st", "KeyType": "HASH"}, {"AttributeName": "due", "KeyType": "RANGE"}],
                "Projection": {"ProjectionType": "KEYS_ONLY"},
            }
        ],
    }


def _pk(analysis_id: str) -> str:
    return f"A#{analysis_id}"


def _analysis_of(job_id: str) -> str:
    return job_id.split(".", 1)[0]


def _num(x: float) -> Decimal:
    return Decimal(repr(float(x)))


def _due(job: Job, now: float) -> bool:
    return job.state == JobState.PENDING and job.due_at is not None and job.due_at <= now


def _counter_item(analysis_id: str, jobs: Sequence[Job]) -> dict[str, Any]:
    counts = dict.fromkeys(JobState, 0)
    for job in jobs:
        counts[job.state] += 1
    return {"pk": _pk(analysis_id), "sk": COUNTER_SK, "complete": True,
            **{f"n_{state.value}": n for state, n in counts.items()}}


class DynamoDBStateStore:
    """``StateStore`` on a DynamoDB table (AWS, or moto's server over HTTP)."""

    def __init__(
        self,
        table: str,
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        create: bool = False,
    ) -> None:
        config = Config(retries={"max_attempts": 4, "mode": "standard"}, connect_timeout=3, read_timeout=10)
        self._resource = boto3.resource("dynamodb", endpoint_url=endpoint_url, region_name=region, config=config)
        self.table_name = table
        self._table = self._resource.Table(table)
        if create:
            self.ensure_table()

    def ensure_table(self) -> None:
        """Create the table if it does not exist (local emulators; AWS gets it from serverless.yml)."""
        client = self._resource.meta.client
        try:
            client.describe_table(TableName=self.table_name)
            return
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ResourceNotFoundException":
                raise StorageError(f"DynamoDB table {self.table_name}: {exc}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"DynamoDB unreachable: {exc}") from exc
        try:
            client.create_table(**table_definition(self.table_name))
            client.get_waiter("table_exists").wait(TableName=self.table_name, WaiterConfig={"Delay": 0.2})
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ResourceInUseException":
                raise StorageError(f"cannot create DynamoDB table {self.table_name}: {exc}") from exc

    # ---- item conversion --------------------------------------------------
    @staticmethod
    def _analysis_item(a: Analysis) -> dict[str, Any]:
        return {
            "pk": _pk(a.analysis_id), "sk": "A", "state": a.state.value, "version": a.version,
            "st": f"A#{a.state.value}", "due": _num(a.created_at), "body": json.dumps(a.to_item()),
        }

    @staticmethod
    def _job_item(j: Job) -> dict[str, Any]:
        item: dict[str, Any] = {
            "pk": _pk(j.analysis_id), "sk": f"J#{j.job_id}", "state": j.state.value, "version": j.version,
            "body": json.dumps(j.to_item()),
        }
        if j.state == JobState.PENDING and j.due_at is not None:
            item["st"], item["due"] = f"J#PENDING#{j.priority}", _num(j.due_at)
        elif j.state == JobState.RUNNING and j.lease_expires_at is not None:
            item["st"], item["due"] = "J#RUNNING", _num(j.lease_expires_at)
        return item

    def _call(self, what: str, fn: Any, **kwargs: Any) -> Any:
        try:
            return fn(**kwargs)
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                raise
            raise StorageError(f"DynamoDB {what} on {self.table_name} failed: {exc}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"DynamoDB {what} on {self.table_name}: the service is unreachable ({exc})") from exc

    def _get_item(self, pk: str, sk: str) -> dict[str, Any] | None:
        out = self._call("GetItem", self._table.get_item, Key={"pk": pk, "sk": sk}, ConsistentRead=True)
        item: dict[str, Any] | None = out.get("Item")
        return item

    def _conditional_put(self, item: dict[str, Any], expected_state: str | None, expected_version: int,
                         what: str) -> None:
        condition = Attr("version").eq(expected_version)
        if expected_state is not None:
            condition = Attr("state").eq(expected_state) & condition
        try:
            self._call("PutItem", self._table.put_item, Item=item, ConditionExpression=condition)
        except ClientError as exc:
            current = self._get_item(item["pk"], item["sk"])
            if current is None:
                raise NotFoundError(f"{what} not found") from exc
            raise ConflictError(
                f"{what} changed concurrently (now {current['state']}, version {current['version']}); nothing written"
            ) from exc

    def _query_all(self, **kwargs: Any) -> list[dict[str, Any]]:
        """Every page of a Query; with ``Limit``, at most that many items in all (each page asks for the rest)."""
        items: list[dict[str, Any]] = []
        total = kwargs.get("Limit")
        while True:
            out = self._call("Query", self._table.query, **kwargs)
            items.extend(out.get("Items", []))
            if "LastEvaluatedKey" not in out or (total is not None and len(items) >= total):
                return items if total is None else items[:total]
            kwargs["ExclusiveStartKey"] = out["LastEvaluatedKey"]
            if total is not None:
                kwargs["Limit"] = total - len(items)

    def _index_keys(self, condition: Any, limit: int | None = None) -> list[dict[str, Any]]:
        """Keys (``pk``, ``sk``, ``due``) of the index entries matching ``condition``, in ``due`` order.

        A table that has no readable ``by_state_keys`` yet (being added and backfilled by the deploy that
        introduces it, or a table created by older code) answers from ``LEGACY_INDEX``, which holds the same keys.
        """
        kwargs: dict[str, Any] = {"IndexName": INDEX, "KeyConditionExpression": condition,
                                  "ProjectionExpression": "pk, sk, #d", "ExpressionAttributeNames": {"#d": "due"}}
        if limit is not None:
            kwargs["Limit"] = limit
        try:
            return self._query_all(**kwargs)
        except StorageError as exc:
            cause = exc.__cause__
            # AWS: ValidationException (index backfilling or missing); moto: ResourceNotFoundException (missing)
            if not (isinstance(cause, ClientError) and cause.response["Error"]["Code"]
                    in ("ValidationException", "ResourceNotFoundException")):
                raise
            try:
                return self._query_all(**{**kwargs, "IndexName": LEGACY_INDEX})
            except StorageError:
                raise exc from cause  # no old index either: the new index's error is the one to read

    def _batch_get(self, keys: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """Items by key, 100 per BatchGetItem (consistent reads), unprocessed keys asked again; any order."""
        out: list[dict[str, Any]] = []
        for start in range(0, len(keys), 100):
            request: dict[str, Any] = {self.table_name: {
                "Keys": [{"pk": k["pk"], "sk": k["sk"]} for k in keys[start:start + 100]], "ConsistentRead": True}}
            while request:
                reply = self._call("BatchGetItem", self._resource.batch_get_item, RequestItems=request)
                out.extend(reply["Responses"].get(self.table_name, []))
                request = reply.get("UnprocessedKeys") or {}
        return out

    # ---- analyses ---------------------------------------------------------
    def create_analysis(self, analysis: Analysis, jobs: Sequence[Job]) -> bool:
        """The analysis and its job counter in one transaction, then the jobs (a batch)."""
        try:
            self._transact("TransactWriteItems (create analysis)", [
                {"Put": {"TableName": self.table_name, "Item": self._analysis_item(analysis),
                         "ConditionExpression": "attribute_not_exists(pk)"}},
                {"Put": {"TableName": self.table_name, "Item": _counter_item(analysis.analysis_id, jobs)}},
            ])
        except ClientError:
            return False
        try:
            with self._table.batch_writer() as batch:
                for job in jobs:
                    batch.put_item(Item=self._job_item(job))
        except (ClientError, BotoCoreError) as exc:
            raise StorageError(f"DynamoDB BatchWriteItem on {self.table_name} failed: {exc}") from exc
        return True

    def get_analysis(self, analysis_id: str) -> Analysis:
        item = self._get_item(_pk(analysis_id), "A")
        if item is None:
            raise NotFoundError(f"analysis {analysis_id!r} not found")
        return Analysis.from_item(json.loads(item["body"]))

    def update_analysis(self, analysis: Analysis, expected_version: int) -> Analysis:
        new = Analysis.from_item({**analysis.to_item(), "version": expected_version + 1})
        self._conditional_put(self._analysis_item(new), None, expected_version, f"analysis {new.analysis_id}")
        return new

    def list_analyses(self, state: AnalysisState | None = None) -> list[Analysis]:
        if state is None:
            items: list[dict[str, Any]] = []
            kwargs: dict[str, Any] = {"FilterExpression": Attr("sk").eq("A")}
            while True:
                out = self._call("Scan", self._table.scan, **kwargs)
                items.extend(out.get("Items", []))
                if "LastEvaluatedKey" not in out:
                    break
                kwargs["ExclusiveStartKey"] = out["LastEvaluatedKey"]
        else:  # keys from the index, the analyses from the table (consistent: the index may lag a state change)
            keys = self._index_keys(Key("st").eq(f"A#{state.value}"))
            items = [i for i in self._batch_get(keys) if i.get("state") == state.value]
        analyses = [Analysis.from_item(json.loads(i["body"])) for i in items]
        return sorted(analyses, key=lambda a: a.created_at)

    def delete_analysis(self, analysis_id: str) -> int:
        items = self._query_all(KeyConditionExpression=Key("pk").eq(_pk(analysis_id)), ConsistentRead=True,
                                ProjectionExpression="pk, sk")
        try:
            with self._table.batch_writer() as batch:
                for item in items:
                    batch.delete_item(Key={"pk": item["pk"], "sk": item["sk"]})
        except (ClientError, BotoCoreError) as exc:
            raise StorageError(f"DynamoDB BatchWriteItem (delete) on {self.table_name} failed: {exc}") from exc
        return sum(item["sk"] != COUNTER_SK for item in items)

    # ---- jobs -------------------------------------------------------------
    def add_jobs(self, jobs: Sequence[Job]) -> list[Job]:
        created: list[Job] = []
        for job in jobs:
            try:
                self._transact("TransactWriteItems (add job)", [
                    {"Put": {"TableName": self.table_name, "Item": self._job_item(job),
                             "ConditionExpression": "attribute_not_exists(pk)"}},
                    self._count(job.analysis_id, {job.state: 1}),
                ])
            except ClientError:
                continue
            created.append(job)
        return created

    def get_job(self, job_id: str) -> Job:
        item = self._get_item(_pk(_analysis_of(job_id)), f"J#{job_id}")
        if item is None:
            raise NotFoundError(f"job {job_id!r} not found")
        return Job.from_item(json.loads(item["body"]))

    def list_jobs(self, analysis_id: str) -> list[Job]:
        items = self._query_all(
            KeyConditionExpression=Key("pk").eq(_pk(analysis_id)) & Key("sk").begins_with("J#"), ConsistentRead=True
        )
        return sorted((Job.from_item(json.loads(i["body"])) for i in items), key=lambda j: j.job_id)

    def update_job(self, job: Job, expected_state: JobState, expected_version: int) -> Job:
        """A write that keeps the state is one conditional put; a state change moves the counter with it."""
        new = Job.from_item({**job.to_item(), "version": expected_version + 1})
        if new.state == expected_state:
            self._conditional_put(self._job_item(new), expected_state.value, expected_version, f"job {new.job_id}")
            return new
        item = self._job_item(new)
        try:
            self._transact("TransactWriteItems (job transition)", [
                {"Put": {"TableName": self.table_name, "Item": item,
                         "ConditionExpression": "#s = :s AND #v = :v",
                         "ExpressionAttributeNames": {"#s": "state", "#v": "version"},
                         "ExpressionAttributeValues": {":s": expected_state.value, ":v": expected_version}}},
                self._count(new.analysis_id, {expected_state: -1, new.state: 1}),
            ])
        except ClientError as exc:
            current = self._get_item(item["pk"], item["sk"])
            if current is None:
                raise NotFoundError(f"job {new.job_id} not found") from exc
            raise ConflictError(f"job {new.job_id} changed concurrently (now {current['state']}, version "
                                f"{current['version']}); nothing written") from exc
        return new

    def due_jobs(self, now: float, limit: int = 100) -> list[Job]:
        """Due PENDING jobs by priority class, analyses taking turns within a class (``state.fair``).

        Per class, the keys of the oldest ``due_window(n)`` due jobs are read from the index (``n``: the jobs
        still wanted; 4 x, at least 100, at most 2,000), put in the fair order, and the first ``n`` are read
        whole, consistently. A job the index still shows as due but whose consistent copy is no longer due
        (the index lags a write: one just dispatched by the previous batch) is dropped, not sent twice.

        Why a window of 4 x ``limit`` keys is enough: when a class has no more due jobs than the window, the
        window is all of them and the batch is exactly the fair order (the SQLite store's). When more are
        due (a backlog: jobs due again after ``redispatch_s`` unclaimed, or a burst of submissions), the
        window is the oldest ones, so it holds the oldest due job of every analysis that has waited longest,
        and those analyses, which the fair order serves first anyway, take turns as usual; an analysis with
        many old jobs cannot fill a batch while another analysis has a job in the window. What is given up:
        an analysis whose oldest due job is newer than the whole window is not in this batch. Each batch
        takes ``limit`` jobs out of the window and ``dispatch_due`` asks for batch after batch within one
        call, so such an analysis enters the window after at most (due jobs older than its first - window)
        / ``limit`` batches, and takes turns from then on; ordered by due time alone it would wait for
        every older job. The old fixed window (2,000 keys per class, whatever ``limit``) kept the exact fair
        order up to 2,000 due jobs per class, at 2,000 keys for a batch of 200 (800 now), and the index then
        projected whole items, so every key was charged as a whole job item.
        """
        chosen: list[DueKey] = []
        for priority in PRIORITIES:
            wanted = limit - len(chosen)
            if wanted <= 0:
                break
            items = self._index_keys(Key("st").eq(f"J#PENDING#{priority}") & Key("due").lte(_num(now)),
                                     due_window(wanted))
            keys = [DueKey(priority, str(i["pk"])[2:], float(i["due"]), str(i["sk"])[2:]) for i in items]
            chosen.extend(fair_order(keys)[:wanted])
        jobs = {j.job_id: j for j in self._get_jobs([k.job_id for k in chosen])}
        return [jobs[k.job_id] for k in chosen if k.job_id in jobs and _due(jobs[k.job_id], now)]

    def _get_jobs(self, job_ids: Sequence[str]) -> list[Job]:
        """Jobs by id (``_batch_get``: consistent reads)."""
        keys = [{"pk": _pk(_analysis_of(j)), "sk": f"J#{j}"} for j in job_ids]
        return [Job.from_item(json.loads(i["body"])) for i in self._batch_get(keys)]

    def job_counts(self, analysis_id: str) -> dict[JobState, int]:
        """One consistent read of the analysis's counter; a recount where it has none (stored before counters)."""
        counter = self._get_item(_pk(analysis_id), COUNTER_SK)
        if counter is not None and counter.get("complete"):
            return {state: int(counter.get(f"n_{state.value}", 0)) for state in JobState}
        return self.recount_jobs(analysis_id)

    def recount_jobs(self, analysis_id: str) -> dict[JobState, int]:
        """Jobs per state by reading every job item of the analysis (what the counter must always equal)."""
        items = self._query_all(
            KeyConditionExpression=Key("pk").eq(_pk(analysis_id)) & Key("sk").begins_with("J#"),
            ProjectionExpression="#s", ExpressionAttributeNames={"#s": "state"}, ConsistentRead=True,
        )
        counts = dict.fromkeys(JobState, 0)
        for item in items:
            counts[JobState(item["state"])] += 1
        return counts

    def expired_jobs(self, now: float, limit: int = 100) -> list[Job]:
        """The keys of the ``limit`` oldest expired leases from the index, the jobs from the table (consistent;
        one the index still shows RUNNING that has since finished or renewed its lease is left out)."""
        keys = self._index_keys(Key("st").eq("J#RUNNING") & Key("due").lt(_num(now)), limit)
        jobs = {j.job_id: j for j in (Job.from_item(json.loads(i["body"])) for i in self._batch_get(keys))}
        out = [jobs.get(str(k["sk"])[2:]) for k in keys]
        return [j for j in out if j is not None and j.state == JobState.RUNNING
                and j.lease_expires_at is not None and j.lease_expires_at < now]

    def _count(self, analysis_id: str, deltas: dict[JobState, int]) -> dict[str, Any]:
        """The ``ADD`` to an analysis's job counter that goes in the same transaction as a job write."""
        names = {f"#n{i}": f"n_{state.value}" for i, state in enumerate(deltas)}
        values = {f":d{i}": d for i, d in enumerate(deltas.values())}
        return {"Update": {"TableName": self.table_name, "Key": {"pk": _pk(analysis_id), "sk": COUNTER_SK},
                           "UpdateExpression": "ADD " + ", ".join(f"#n{i} :d{i}" for i in range(len(deltas))),
                           "ExpressionAttributeNames": names, "ExpressionAttributeValues": values}}

    def _transact(self, what: str, items: list[dict[str, Any]]) -> None:
        """``TransactWriteItems`` (the resource's client: items in the same plain form as ``put_item``'s); a failed
        condition re-raises botocore's ``ClientError`` for the caller to read, anything else is a ``StorageError``."""
        try:
            self._resource.meta.client.transact_write_items(TransactItems=items)
        except BotoCoreError as exc:
            raise StorageError(f"DynamoDB {what} on {self.table_name}: the service is unreachable ({exc})") from exc
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "TransactionCanceledException":
                raise StorageError(f"DynamoDB {what} on {self.table_name} failed: {exc}") from exc
            reasons = [r.get("Code") for r in exc.response.get("CancellationReasons", [])]
            if "ConditionalCheckFailed" not in reasons:
                raise StorageError(f"DynamoDB {what} on {self.table_name} was cancelled ({reasons})") from exc
            raise

    # ---- per-key quotas (coordinator/state/quotas.py) -----------------------------
    def quota_count(self, name: str, by: int, expires_at: float) -> int:
        """Add ``by`` to the counter item ``Q#<name>`` (``ADD``, atomic) and return it; ``by=0`` reads it."""
        key = {"pk": f"Q#{name}", "sk": "Q"}
        if not by:
            item = self._get_item(key["pk"], "Q")
            return int(item["n"]) if item else 0
        out = self._call("UpdateItem", self._table.update_item, Key=key, UpdateExpression="ADD n :by SET #e = :e",
                         ExpressionAttributeNames={"#e": "exp"},
                         ExpressionAttributeValues={":by": by, ":e": int(expires_at)}, ReturnValues="UPDATED_NEW")
        return int(out["Attributes"]["n"])

    def quota_holds(self, owner: str) -> list[str]:
        item = self._get_item(f"H#{owner}", "H")
        return sorted(str(e) for e in (item or {}).get("e", ()))

    def quota_try_hold(self, owner: str, entry: str, limit: int) -> bool:
        """Add ``entry`` to the string set of ``H#<owner>`` only while it has fewer than ``limit`` entries."""
        try:
            self._call("UpdateItem", self._table.update_item, Key={"pk": f"H#{owner}", "sk": "H"},
                       UpdateExpression="ADD e :one", ConditionExpression="attribute_not_exists(e) OR size(e) < :limit",
                       ExpressionAttributeValues={":one": {entry}, ":limit": limit})
        except ClientError:  # the condition failed: at the limit
            return False
        return True

    def quota_drop_holds(self, owner: str, entries: Collection[str]) -> None:
        if entries:
            self._call("UpdateItem", self._table.update_item, Key={"pk": f"H#{owner}", "sk": "H"},
                       UpdateExpression="DELETE e :gone", ExpressionAttributeValues={":gone": set(entries)})

    def close(self) -> None:
        self._resource.meta.client.close()
