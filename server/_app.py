"""Wiring: the worker pool first, then the gRPC server with health and reflection; drain on stop.

Start order matters: the worker template is exec'd before any gRPC object exists, so no worker
can ever inherit gRPC threads or state. Stop order is fixed and idempotent: health goes
NOT_SERVING and new calls are refused, in-flight calls get ``drain_grace`` seconds, then the
workers and their template are stopped, and last the metrics endpoint (scrapes see the drain).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from tilefn import _malloc
from tilefn.sandbox import WorkerPool
from tilefn.v1 import (
    admin_service_pb2,
    admin_service_pb2_grpc,
    array_service_pb2,
    array_service_pb2_grpc,
    graph_service_pb2_grpc,
    registry_service_pb2,
    registry_service_pb2_grpc,
    server_info_pb2,
    server_info_pb2_grpc,
)

from ._admin_service import AdminService
from ._admission import Admission, AdmissionLimits
from ._array_service import ArrayService
from ._config import ConfigError, ServerConfig
from ._graph_service import SERVICE as GRAPH_SERVICE
from ._graph_service import GraphService
from ._graphs import Graphs
from ._identity import Identity
from ._info_service import ServerInfoService
from ._metrics import Metrics, MetricsEndpoint
from ._registry_service import RegistryService
from ._replicas import BEAT_SECONDS
from ._result_storage import open_storage
from ._staging import make_catalog
from ._stores import check_store_settings, open_store
from ._task_service import TaskQueries
from ._tasks import TaskSettings
from ._tls import bind, is_loopback, load
from ._udf_service import SERVICE as UDF_SERVICE
from ._udf_service import UdfService, add_to_server

log = logging.getLogger(__name__)

ARRAY_SERVICE = array_service_pb2.DESCRIPTOR.services_by_name["ArrayService"].full_name
INFO_SERVICE = server_info_pb2.DESCRIPTOR.services_by_name["ServerInfoService"].full_name
REGISTRY_SERVICE = registry_service_pb2.DESCRIPTOR.services_by_name["RegistryService"].full_name
ADMIN_SERVICE = admin_service_pb2.DESCRIPTOR.services_by_name["AdminService"].full_name
#: Health is reported for the server ("") and each service that depends on workers or storage.
HEALTH_NAMES = ("", UDF_SERVICE, GRAPH_SERVICE, ARRAY_SERVICE, REGISTRY_SERVICE)
#: How often expired stored results and the tasks and graphs of dead replicas are looked for (s).
SWEEP_SECONDS = 60.0
#: How long the stored-bytes metric of a namespace may lag behind a newly stored result.
RECOUNT_SECONDS = 1.0
#: Headroom above max_request_bytes so oversized requests reach our handler and get a clear error.
RECEIVE_SLACK = 1 << 20


class TilefnServer:
    """One tilefn replica: worker pool, gRPC server, health."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.pool = WorkerPool(config.pool, on_health=self._pool_health)
        self.metrics = Metrics(self.pool)
        self.port = 0
        #: "host:port" of the metrics endpoint once it listens.
        self.metrics_address = ""
        self._metrics_endpoint = MetricsEndpoint(self.metrics.registry)
        self._server: grpc.aio.Server | None = None
        self._health = health.aio.HealthServicer()  # type: ignore[attr-defined]
        self._udf: UdfService | None = None
        self._graphs: Graphs | None = None
        #: Bounded, fair admission of executions (built in ``start``, where limits are checked).
        self.admission: Admission | None = None
        self._identity: Identity | None = None
        self._stopped = asyncio.Event()
        self._background: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        """Check the TLS files, start workers, then serve; return the bound port."""
        tls = load(self.config)  # before the pool: a bad setting must not leave workers behind
        check_store_settings(self.config)
        settings = await asyncio.to_thread(task_settings, self.config)  # results reachable?
        self.admission = admission = Admission(
            AdmissionLimits.from_config(self.config),
            on_change=lambda ns: self.metrics.set_queue_depth(ns, admission.depth(ns)),
        )
        if self.config.metrics_port:  # so is a metrics port in use
            await self._serve_metrics()
        self.pool.start()
        await self.pool.open()
        # Without an endpoint nobody could read RPC metrics: spare every call the interceptor.
        interceptors = [self.metrics.interceptor] if self.config.metrics_port else []
        server = grpc.aio.server(interceptors=interceptors, options=self._server_options())
        self._identity = identity = Identity.open(
            open_store(self.config.store, self.config.store_password_file),
            settings,
            authenticate=self.config.auth,
        )
        if not self.config.auth:
            log.warning("authentication is OFF (--no-auth): every caller is an anonymous admin")
        catalog = make_catalog(self.config)
        self._udf = UdfService(
            self.config, self.pool, catalog, identity, admission=admission, metrics=self.metrics
        )
        add_to_server(self._udf, TaskQueries(identity), server)
        self._graphs = graphs = Graphs(
            identity.store, identity.writer, identity.tasks, runner=self._udf,
            check=self._udf.check, max_parallel=admission.limits.max_running,
            metrics=self.metrics,
        )  # fmt: skip
        self._start_housekeeping(identity, graphs)
        graph_service_pb2_grpc.add_GraphServiceServicer_to_server(
            GraphService(identity.auth, graphs), server
        )
        array_service_pb2_grpc.add_ArrayServiceServicer_to_server(
            ArrayService(catalog, identity), server
        )
        registry = RegistryService(identity.auth, identity.registry)
        registry_service_pb2_grpc.add_RegistryServiceServicer_to_server(registry, server)
        admin = AdminService(identity.auth, identity.store, identity.writer)
        admin_service_pb2_grpc.add_AdminServiceServicer_to_server(admin, server)
        info = ServerInfoService(self.config, self.pool, identity.auth)
        server_info_pb2_grpc.add_ServerInfoServiceServicer_to_server(info, server)
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        names = (
            UDF_SERVICE,
            GRAPH_SERVICE,
            ARRAY_SERVICE,
            REGISTRY_SERVICE,
            ADMIN_SERVICE,
            INFO_SERVICE,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        )
        reflection.enable_server_reflection(names, server)
        self.port = bind(server, self.config, tls)
        await server.start()
        self._server = server
        for name in HEALTH_NAMES:
            await self._health.set(name, health_pb2.HealthCheckResponse.SERVING)
        return self.port

    async def _serve_metrics(self) -> None:
        host = self.config.metrics_host or self.config.host
        try:
            port = await self._metrics_endpoint.start(host, max(self.config.metrics_port, 0))
        except OSError as exc:
            where = f"{host}:{self.config.metrics_port}"
            raise ConfigError(f"cannot serve metrics on {where}: {exc}") from None
        self.metrics_address = f"{host}:{port}"
        if not is_loopback(host):
            log.warning("metrics on %s are readable by anyone who can reach them", host)

    def _pool_health(self, healthy: bool) -> None:
        """Workers can (not) be had: tell load balancers through the health service."""
        if self._stopped.is_set():
            return
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if healthy
            else (health_pb2.HealthCheckResponse.NOT_SERVING)
        )
        log.warning("worker pool %s", "recovered" if healthy else "unavailable")
        for name in HEALTH_NAMES:
            self._in_background(self._health.set(name, status))

    async def stop(self, grace: float | None = None) -> None:
        """Drain and stop; safe to call more than once."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        await self._health.enter_graceful_shutdown()
        if self._udf is not None:
            self._udf.draining = True
        grace = self.config.drain_grace if grace is None else grace
        draining = [self._drain_executions(grace)]
        if self._server is not None:
            draining.append(self._server.stop(grace))
        await asyncio.gather(*draining)
        for task in self._background:
            task.cancel()
        await self.pool.close()
        if self._identity is not None:
            self._identity.close()
        await self._metrics_endpoint.close()

    async def _drain_executions(self, grace: float) -> None:
        """Graphs first (they stop starting nodes at the end of the grace), then the rest of
        the executions get what is left of it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        if self._graphs is not None:
            await self._graphs.drain(grace)
        if self._udf is not None:
            await self._udf.drain(max(0.0, deadline - loop.time()))

    def _server_options(self) -> list[tuple[str, int]]:
        config = self.config
        options = [("grpc.max_receive_message_length", config.max_request_bytes + RECEIVE_SLACK)]
        if config.max_connection_age > 0:
            options += [
                ("grpc.max_connection_age_ms", int(config.max_connection_age * 1000)),
                # the longest a call may run, and a minute to send its result
                ("grpc.max_connection_age_grace_ms", int((config.max_timeout + 60) * 1000)),
            ]
        return options

    @staticmethod
    def _recover(identity: Identity, graphs: Graphs) -> None:
        """Fail the unfinished tasks and graphs of server processes that are gone (this one's
        earlier life, or a replica sharing the store that was killed)."""
        for what, failed in (("tasks", identity.tasks.recover()), ("graphs", graphs.recover())):
            if failed:
                log.warning("%d %s of a stopped server marked FAILED", failed, what)

    def _start_housekeeping(self, identity: Identity, graphs: Graphs) -> None:
        """Fail the tasks and graphs of dead servers and delete expired results: now, then
        periodically."""
        identity.tasks.replicas.beat(())  # seen alive by the others before it owns a task
        self._recover(identity, graphs)

        def count(namespace: str) -> int:
            identity.writer.flush()  # the new result's record first
            return identity.store.stored_bytes(namespace)

        recounting: set[str] = set()

        async def recount(namespace: str) -> None:
            """At most one count per namespace a second, however many results are stored."""
            if namespace in recounting:
                return
            recounting.add(namespace)
            try:
                await asyncio.sleep(RECOUNT_SECONDS)
                total = await asyncio.to_thread(count, namespace)
            finally:
                recounting.discard(namespace)
            self.metrics.set_stored_bytes(namespace, total)

        identity.tasks.on_stored = lambda namespace: self._in_background(recount(namespace))

        def sweep_once() -> None:
            removed, forgotten = identity.tasks.sweep()
            identity.store.forget_graphs(time.time() - identity.tasks.settings.retention)
            identity.tasks.replicas.forget()
            if removed or forgotten:
                log.info("deleted %d expired results, %d old task records", removed, forgotten)
            self.metrics.set_all_stored_bytes(identity.store.stored_bytes_by_namespace())

        async def sweep() -> None:
            while True:
                try:
                    await asyncio.to_thread(sweep_once)
                    await asyncio.sleep(SWEEP_SECONDS)
                    await asyncio.to_thread(self._recover, identity, graphs)
                except Exception:  # e.g. the store is unreachable: the next round tries again
                    log.exception("housekeeping failed; trying again in %.0f s", SWEEP_SECONDS)
                    await asyncio.sleep(SWEEP_SECONDS)

        self._in_background(sweep())
        self._in_background(self._beat(identity, graphs))

    async def _beat(self, identity: Identity, graphs: Graphs) -> None:
        """Heartbeats among the replicas sharing the store; stop what callers asked another
        replica to cancel (``_replicas``)."""
        replicas = identity.tasks.replicas
        while True:
            running = identity.tasks.running() + graphs.running()
            try:
                asked = await asyncio.to_thread(replicas.beat, running)
            except Exception:  # the store is unreachable for now: try again at the next beat
                log.exception("could not write this replica's heartbeat")
                asked = []
            for target_id in asked:
                if not identity.tasks.stop(target_id):
                    graphs.stop(target_id)
            await asyncio.sleep(BEAT_SECONDS)

    def _in_background(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` on the loop, holding a reference; it is cancelled at stop."""
        task = asyncio.get_running_loop().create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def wait(self) -> None:
        """Return once stop() has been called."""
        await self._stopped.wait()


def task_settings(config: ServerConfig) -> TaskSettings:
    """The results' storage (checked: ConfigError if unusable) and their limits (blocking)."""
    storage = open_storage(config.results_dir, Path(config.store).parent / "results")
    log.info("stored results in %s", storage.location)
    return TaskSettings(
        storage=storage,
        default_ttl=config.result_ttl,
        max_ttl=config.max_result_ttl,
        quota_bytes=config.result_quota_bytes,
        retention=config.task_retention,
    )


async def serve(config: ServerConfig) -> None:
    """Run until SIGINT or SIGTERM, then drain and exit."""
    _malloc.tune()
    server = TilefnServer(config)
    port = await server.start()
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    print(f"tilefn serving on {config.host}:{port}", flush=True)
    log.info("serving on %s:%d with %d ready workers", config.host, port, config.pool.ready_workers)
    if server.metrics_address:  # after the line above, which scripts wait for
        print(f"tilefn metrics on http://{server.metrics_address}/metrics", flush=True)
        log.info("metrics on http://%s/metrics", server.metrics_address)
    await stopping.wait()
    log.info("draining (grace %.0f s)", config.drain_grace)
    await server.stop()
