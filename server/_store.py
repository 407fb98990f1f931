"""What the server keeps: the records and the one interface every store implements.

The server talks to its state only through ``Store``. The embedded default is SQLite
(``_sqlite.SqliteStore``); ``_postgres.PostgresStore`` serves replicas on several hosts. Both
are ``_sql.SqlStore``: the same queries and migrations over a different engine.
Methods are blocking: call them from a thread (``asyncio.to_thread``), except the few reads the
docstrings mark as cheap. Failures a caller can cause raise ``ServiceError`` with their reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

NamespaceKind = Literal["user", "organisation"]
#: Scopes a token may hold; "admin" implies every other.
SCOPES = ("run", "read_arrays", "manage_udfs", "manage_arrays", "admin")
#: The grantee that means "everyone with a valid token".
PUBLIC = "*"


@dataclass(frozen=True)
class Namespace:
    """A user or an organisation."""

    name: str
    kind: NamespaceKind
    created_at: float
    #: An organisation's members, or the organisations a user belongs to; sorted.
    members: tuple[str, ...] = ()


@dataclass(frozen=True)
class TokenRecord:
    """A token as stored: never its secret, only the secret's hash."""

    id: str
    namespace: str
    scopes: tuple[str, ...]
    description: str
    created_at: float
    expires_at: float
    last_used_at: float | None = None
    revoked_at: float | None = None


@dataclass(frozen=True)
class UdfDraft:
    """What a caller supplies for a new UDF version."""

    source: str
    entry_point: str
    pickle: bytes
    python_version: str
    description: str
    tags: tuple[str, ...]
    #: The signature as JSON: a list of Parameter messages in their JSON form.
    parameters_json: str
    digest: str


@dataclass(frozen=True)
class UdfVersion:
    """One immutable version of a registered UDF."""

    namespace: str
    name: str
    version: int
    latest_version: int
    #: When it was registered, in whole microseconds since the epoch (UTC), so that a time
    #: shown to a user (ISO 8601 has microseconds) names exactly this version.
    created_us: int
    created_by: str
    draft: UdfDraft
    shared_with: tuple[str, ...]

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}@{self.version}"


@dataclass(frozen=True)
class UdfQuery:
    """Which UDFs ListUdfs wants, among those owned by or shared with ``visible_to``."""

    #: Namespaces (and "*") whose own and shared UDFs are visible; None means every UDF.
    visible_to: frozenset[str] | None
    namespace: str = ""
    tag: str = ""
    text: str = ""
    after: str = ""
    limit: int = 100


@dataclass(frozen=True)
class AuditRecord:
    """One execution: who ran what, on which arrays, when, how long, how it ended."""

    task_id: str
    namespace: str
    token_id: str
    method: str
    udf: str
    arrays: tuple[str, ...]
    started_at: float
    duration: float
    outcome: str
    reason: str


TaskStatus = Literal["QUEUED", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED"]
#: States a task never leaves.
FINAL_STATES = frozenset({"SUCCEEDED", "FAILED", "CANCELLED"})


@dataclass(frozen=True)
class TaskRecord:
    """One execution's record (tasks outlive the calls that started them)."""

    task_id: str
    namespace: str
    token_id: str
    method: str
    udf: str
    arrays: tuple[str, ...]
    status: TaskStatus
    #: The server process running it ("host:pid:start"); see ``_replicas``.
    owner: str
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    cpu_seconds: float = 0.0
    peak_memory_bytes: int = 0
    result_bytes: int = 0
    rows: int = 0
    error_reason: str = ""
    error_message: str = ""
    logs: str = ""
    logs_total: int = 0
    logs_truncated: bool = False
    #: The stored result's file, when there is one.
    result_path: str = ""
    result_expires_at: float | None = None


GraphStatus = Literal["RUNNING", "SUCCEEDED", "FAILED", "CANCELLED"]


@dataclass(frozen=True)
class GraphRecord:
    """A submitted graph: its request, as sent, and the state of each node (JSON, see
    ``_graph_state``), written as a whole (the writer keeps only the latest of each graph)."""

    graph_id: str
    namespace: str
    token_id: str
    name: str
    status: GraphStatus
    #: The server process running it ("host:pid:start"), as for tasks.
    owner: str
    created_at: float
    #: The SubmitGraphRequest's wire bytes.
    spec: bytes
    #: The nodes' states: a JSON list.
    nodes: str
    finished_at: float | None = None
    error_reason: str = ""
    error_message: str = ""
    #: How many times RetryGraph ran it again.
    retries: int = 0
    #: "NODE_STATUS_..." name -> count, as JSON (ListGraphs shows it without the nodes).
    counts: str = "{}"


@dataclass(frozen=True)
class GraphQuery:
    """Which graphs ListGraphs wants."""

    namespaces: frozenset[str] | None  # None: every namespace (admins)
    status: str = ""
    before: tuple[float, str] | None = None  # (created_at, graph_id) of the previous page's last
    limit: int = 100


@dataclass(frozen=True)
class TaskQuery:
    """Which tasks ListTasks wants."""

    namespaces: frozenset[str] | None  # None: every namespace (admins)
    status: str = ""
    created_after: float = 0.0
    udf: str = ""
    before: tuple[float, str] | None = None  # (created_at, task_id) of the previous page's last
    limit: int = 100


class Store(Protocol):
    """The server's state. Implementations must be safe for concurrent use by threads and by
    several server processes sharing the store."""

    def close(self) -> None: ...

    # namespaces
    def create_namespace(self, name: str, kind: NamespaceKind) -> Namespace: ...
    def namespace(self, name: str) -> Namespace | None: ...
    def namespaces(self) -> list[Namespace]: ...
    def add_member(self, organisation: str, user: str) -> Namespace: ...
    def remove_member(self, organisation: str, user: str) -> Namespace: ...

    # tokens
    def create_token(
        self, namespace: str, scopes: Sequence[str], lifetime: float, description: str
    ) -> tuple[str, TokenRecord]: ...
    def token_by_secret(self, secret: str) -> TokenRecord | None:
        """Cheap (one indexed read); may run on the event loop."""
        ...

    def tokens(self, namespace: str = "") -> list[TokenRecord]: ...
    def revoke_token(self, token_id: str) -> TokenRecord: ...
    def touch_token(self, token_id: str, when: float) -> None: ...

    # array shares
    def array_shares(self, namespace: str, name: str) -> tuple[str, ...]: ...
    def arrays_shared_with(self, grantees: frozenset[str]) -> set[tuple[str, str]]: ...
    def share_array(self, namespace: str, name: str, grantee: str, share: bool) -> None: ...

    # registered UDFs
    def register_udf(self, namespace: str, name: str, by: str, draft: UdfDraft) -> UdfVersion: ...
    def add_udf_version(
        self, namespace: str, name: str, by: str, draft: UdfDraft
    ) -> UdfVersion: ...
    def udf_version(
        self, namespace: str, name: str, version: int | None, at: int | None
    ) -> UdfVersion | None:
        """The given version, the one current at ``at`` (microseconds since the epoch), or the
        latest; None if there is none."""
        ...

    def udfs(self, query: UdfQuery) -> list[UdfVersion]: ...
    def share_udf(self, namespace: str, name: str, grantee: str, share: bool) -> None: ...
    def delete_udf(self, namespace: str, name: str) -> int: ...

    # audit
    def add_audit(self, records: Sequence[AuditRecord]) -> None: ...
    def audit(self, namespace: str, limit: int) -> list[AuditRecord]: ...

    # tasks and stored results
    def save_tasks(self, records: Sequence[TaskRecord]) -> None: ...
    def task(self, task_id: str) -> TaskRecord | None: ...
    def tasks(self, query: TaskQuery) -> list[TaskRecord]: ...
    def unfinished_tasks(self) -> list[TaskRecord]: ...
    def expired_results(self, now: float) -> list[TaskRecord]: ...
    def stored_bytes(self, namespace: str) -> int: ...
    def stored_bytes_by_namespace(self) -> dict[str, int]: ...
    def forget_tasks(self, ended_before: float) -> int:
        """Delete the records of tasks that ended before then and keep no result."""
        ...

    # graphs

    def save_graphs(self, records: Sequence[GraphRecord]) -> None: ...
    def graph(self, graph_id: str) -> GraphRecord | None: ...
    def graphs(self, query: GraphQuery) -> list[GraphRecord]:
        """The graphs asked for, newest first, without their spec and nodes."""
        ...

    def unfinished_graphs(self) -> list[GraphRecord]: ...
    def forget_graphs(self, ended_before: float) -> int:
        """Delete the records of graphs that ended before then."""
        ...

    # replicas (see _replicas)

    def beat(self, owner: str, now: float) -> None: ...
    def replicas_seen(self, since: float) -> list[str]:
        """The replicas whose last heartbeat is not older than ``since``."""
        ...

    def request_cancel(self, target_id: str, requested_at: float) -> None: ...
    def take_cancel_requests(self, target_ids: Sequence[str]) -> list[str]:
        """Which of these tasks and graphs someone asked to cancel; the requests are deleted."""
        ...

    def forget_replicas(self, before: float) -> None:
        """Delete heartbeats and cancel requests older than ``before``."""
        ...
