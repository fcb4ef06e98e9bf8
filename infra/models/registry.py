"""The registry table (provisioned by components/model_store.py): one item per model version, plus one item per stack.

Version item (model=<name>, version=<version>): prefix, manifestSha256, files, bytes, source, revision, createdBy,
createdAt, `stacks` (stack -> staged | active | retired; a stack not listed counts as staged) and `history` (events).
Stack item (model="@stack", version=<stack>): `active` {model, version}, `previous` (the versions it replaced, the
last one first to come back on rollback) and `seq`, bumped by every change. A promote or rollback is one DynamoDB
transaction conditioned on the `seq` it read: of two racing writers, exactly one commits.
"""

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from boto3.dynamodb.conditions import Attr
from botocore.exceptions import ClientError

from components.model_store import REGISTRY_PARTITION_KEY as PK
from components.model_store import REGISTRY_SORT_KEY as SK
from infra.models.errors import Failed, Refused
from infra.models.manifest import Manifest, version_key, version_prefix

STACK_ITEM = "@stack"  # model names start with [a-z0-9], so this partition never holds a model
STAGED, ACTIVE, RETIRED = "staged", "active", "retired"


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Ref:
    name: str
    version: str

    def __str__(self) -> str:
        return f"{self.name} {self.version}"

    def as_item(self) -> dict[str, str]:
        return {"model": self.name, "version": self.version}

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> "Ref":
        return cls(item["model"], item["version"])


@dataclass(frozen=True)
class StackState:
    stack: str
    active: Ref | None = None
    previous: tuple[Ref, ...] = ()
    seq: int | None = None  # None: no stack item yet


@dataclass(frozen=True)
class VersionRow:
    item: dict[str, Any] = field(repr=False)

    @property
    def ref(self) -> Ref:
        return Ref(self.item[PK], self.item[SK])

    def status(self, stack: str) -> str:
        return str(self.item.get("stacks", {}).get(stack, STAGED))


class Registry:
    def __init__(self, table: Any, actor: str) -> None:
        self.table = table
        self.actor = actor
        # The resource's client: it converts plain Python values to DynamoDB's typed form, transactions included.
        self.client = table.meta.client

    def get(self, name: str, version: str) -> VersionRow | None:
        item = self.table.get_item(Key={PK: name, SK: version}, ConsistentRead=True).get("Item")
        return VersionRow(item) if item else None

    def require(self, name: str, version: str) -> VersionRow:
        row = self.get(name, version)
        if row is None:
            raise Refused(f"{name} {version} is not in registry table {self.table.name}: publish it first")
        return row

    def versions(self, name: str | None = None) -> list[VersionRow]:
        rows = [VersionRow(item) for item in self._scan() if item[PK] != STACK_ITEM]
        rows = [row for row in rows if name is None or row.ref.name == name]
        return sorted(rows, key=lambda row: (row.ref.name, version_key(row.ref.version)))

    def _scan(self) -> Iterator[dict[str, Any]]:
        kwargs: dict[str, Any] = {"ConsistentRead": True}
        while True:
            page = self.table.scan(**kwargs)
            yield from page.get("Items", [])
            if "LastEvaluatedKey" not in page:
                return
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def register(self, manifest: Manifest, manifest_sha256: str, stack: str) -> None:
        """The version's item, written after its MANIFEST.json; never overwrites an existing one."""
        item = {
            PK: manifest.name,
            SK: manifest.version,
            "prefix": version_prefix(manifest.name, manifest.version),
            "manifestSha256": manifest_sha256,
            "files": len(manifest.files),
            "bytes": manifest.total_bytes,
            "source": manifest.source,
            "createdBy": manifest.created_by,
            "createdAt": manifest.created_at,
            "stacks": {stack: STAGED},
            "history": [self._event("published", stack)],
            **({"revision": manifest.revision} if manifest.revision else {}),
        }
        try:
            self.table.put_item(Item=item, ConditionExpression=Attr(PK).not_exists())
        except ClientError as error:
            if _code(error) == "ConditionalCheckFailedException":
                raise Refused(f"{manifest.name} {manifest.version} is already registered") from None
            raise

    def stack_state(self, stack: str) -> StackState:
        item = self.table.get_item(Key={PK: STACK_ITEM, SK: stack}, ConsistentRead=True).get("Item")
        if not item:
            return StackState(stack)
        active = Ref.from_item(item["active"]) if item.get("active") else None
        previous = tuple(Ref.from_item(entry) for entry in item.get("previous", []))
        return StackState(stack, active, previous, int(item["seq"]))

    def promote(self, state: StackState, target: Ref) -> None:
        """Make `target` the stack's active version; the one it replaces goes on top of the rollback list."""
        previous = (*state.previous, state.active) if state.active else state.previous
        self._switch(state, target, previous, "promoted")

    def rollback(self, state: StackState) -> Ref:
        """Back to the version the active one replaced (the top of the rollback list). Returns it."""
        if not state.previous:
            raise Refused(f"stack {state.stack} has no earlier version to roll back to")
        target = state.previous[-1]
        self._switch(state, target, state.previous[:-1], "rolled back to")
        return target

    def retire(self, row: VersionRow, stack: str) -> None:
        try:
            self.table.update_item(
                Key={PK: row.ref.name, SK: row.ref.version},
                UpdateExpression="SET stacks.#s = :retired, history = list_append(history, :event)",
                ConditionExpression="attribute_exists(#pk) AND "
                "(attribute_not_exists(stacks.#s) OR stacks.#s <> :active)",
                ExpressionAttributeNames={"#s": stack, "#pk": PK},
                ExpressionAttributeValues={
                    ":retired": RETIRED, ":active": ACTIVE, ":event": [self._event("retired", stack)]
                },
            )
        except ClientError as error:
            if _code(error) == "ConditionalCheckFailedException":
                raise Refused(f"{row.ref} is active on {stack}: promote another version first") from None
            raise

    def _switch(self, state: StackState, target: Ref, previous: tuple[Ref, ...], action: str) -> None:
        stack = state.stack
        items = [self._stack_update(state, target, previous), self._status_update(target, stack, ACTIVE, action)]
        if state.active and state.active != target:
            items.append(self._status_update(state.active, stack, STAGED, f"replaced by {target.version} on"))
        try:
            self.client.transact_write_items(TransactItems=items)
        except ClientError as error:
            if _code(error) == "TransactionCanceledException":
                raise Failed(
                    f"stack {stack} changed while this command ran (another promote or rollback won, or the version "
                    "was retired); nothing was written, run `models list` and retry"
                ) from None
            raise

    def _stack_update(self, state: StackState, target: Ref, previous: tuple[Ref, ...]) -> dict[str, Any]:
        values: dict[str, Any] = {
            ":active": target.as_item(),
            ":previous": [ref.as_item() for ref in previous],
            ":next": (state.seq or 0) + 1,
        }
        # First change of this stack: the item must not exist yet; later: nobody changed it since we read it.
        condition = {"ConditionExpression": "attribute_not_exists(#pk)", "ExpressionAttributeNames": {"#pk": PK}}
        if state.seq is not None:
            condition = {"ConditionExpression": "seq = :seq"}
            values[":seq"] = state.seq
        return {
            "Update": {
                "TableName": self.table.name,
                "Key": _key(STACK_ITEM, state.stack),
                "UpdateExpression": "SET active = :active, previous = :previous, seq = :next",
                "ExpressionAttributeValues": values,
                **condition,
            }
        }

    def _status_update(self, ref: Ref, stack: str, status: str, action: str) -> dict[str, Any]:
        update: dict[str, Any] = {
            "TableName": self.table.name,
            "Key": _key(ref.name, ref.version),
            "UpdateExpression": "SET stacks.#s = :status, history = list_append(history, :event)",
            "ConditionExpression": "attribute_exists(#pk)",
            "ExpressionAttributeNames": {"#s": stack, "#pk": PK},
            "ExpressionAttributeValues": {":status": status, ":event": [self._event(action, stack)]},
        }
        if status == ACTIVE:
            update["ConditionExpression"] += " AND (attribute_not_exists(stacks.#s) OR stacks.#s <> :retired)"
            update["ExpressionAttributeValues"][":retired"] = RETIRED
        return {"Update": update}

    def _event(self, action: str, stack: str) -> dict[str, str]:
        return {"at": now(), "action": action, "stack": stack, "by": self.actor}


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def _key(name: str, version: str) -> dict[str, str]:
    return {PK: name, SK: version}
