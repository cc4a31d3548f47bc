"""The AWS state store: one DynamoDB table, conditional writes through ``ConditionExpression``.

Single-table layout: an analysis is ``pk=A#<analysis_id>, sk=A``; its jobs
share the partition with ``sk=J#<job_id>``, so listing an analysis's jobs is
one Query. A sparse global secondary index ``by_state`` (``st``, ``due``)
holds only what the coordinator polls: ready PENDING jobs per priority
(``due`` = due_at, the next dispatch time), RUNNING jobs (``due`` = lease expiry) and analyses by
state. The record itself is a JSON ``body`` attribute, so adding a field needs
no migration.

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

INDEX = "by_state"
COUNTER_SK = "C"
#: most due-job keys read per priority class by one ``due_jobs`` call (the oldest ones): the order is fair
#: within them. A larger due set (a backlog being dispatched again) is served oldest window first; the index
#: holds whole items, so each key read costs the item's read capacity
DUE_SCAN_MAX = 2_000


def table_definition(name: str) -> dict[str, Any]:
    """``CreateTable`` arguments; ``serverless.yml`` declares the same table for AWS."""
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
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
    }


def _pk(analysis_id: str) -> str:
    return f"A#{analysis_id}"


def _analysis_of(job_id: str) -> str:
    return job_id.split(".", 1)[0]


def _num(x: float) -> Decimal:
    return Decimal(repr(float(x)))


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
        items: list[dict[str, Any]] = []
        while True:
            out = self._call("Query", self._table.query, **kwargs)
            items.extend(out.get("Items", []))
            if "LastEvaluatedKey" not in out or ("Limit" in kwargs and len(items) >= kwargs["Limit"]):
                return items
            kwargs["ExclusiveStartKey"] = out["LastEvaluatedKey"]

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
        else:
            items = self._query_all(IndexName=INDEX, KeyConditionExpression=Key("st").eq(f"A#{state.value}"))
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

        The keys of a class's due jobs are read from the index (at most ``DUE_SCAN_MAX`` per class, oldest
        first), put in the fair order, and the chosen ``limit`` are read whole, consistently.
        """
        chosen: list[DueKey] = []
        for priority in PRIORITIES:
            if len(chosen) >= limit:
                break
            items = self._query_all(
                IndexName=INDEX, ProjectionExpression="pk, sk, due", Limit=DUE_SCAN_MAX,
                KeyConditionExpression=Key("st").eq(f"J#PENDING#{priority}") & Key("due").lte(_num(now)),
            )
            keys = [DueKey(priority, str(i["pk"])[2:], float(i["due"]), str(i["sk"])[2:]) for i in items]
            chosen.extend(fair_order(keys)[: limit - len(chosen)])
        jobs = {j.job_id: j for j in self._get_jobs([k.job_id for k in chosen])}
        return [jobs[k.job_id] for k in chosen if k.job_id in jobs and jobs[k.job_id].state == JobState.PENDING]

    def _get_jobs(self, job_ids: Sequence[str]) -> list[Job]:
        """Jobs by id, 100 per BatchGetItem (consistent reads), unprocessed keys asked again."""
        out: list[Job] = []
        for start in range(0, len(job_ids), 100):
            keys = [{"pk": _pk(_analysis_of(j)), "sk": f"J#{j}"} for j in job_ids[start:start + 100]]
            request: dict[str, Any] = {self.table_name: {"Keys": keys, "ConsistentRead": True}}
            while request:
                reply = self._call("BatchGetItem", self._resource.batch_get_item, RequestItems=request)
                out.extend(Job.from_item(json.loads(i["body"])) for i in reply["Responses"].get(self.table_name, []))
                request = reply.get("UnprocessedKeys") or {}
        return out

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
        items = self._query_all(
            IndexName=INDEX, KeyConditionExpression=Key("st").eq("J#RUNNING") & Key("due").lt(_num(now)), Limit=limit
        )
        return [Job.from_item(json.loads(i["body"])) for i in items[:limit]]

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
