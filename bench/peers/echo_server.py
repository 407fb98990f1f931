"""Yardstick server: a raw grpc.aio unary echo (bytes in, same bytes out, no protobuf).

    python -m bench.peers.echo_server --port N

The same server flavour as tilefn's (one ``grpc.aio.server()`` on an asyncio loop, default
options), doing no work, so its latency is the floor for any gRPC round trip on this machine.
Prints ``ready`` on stdout once it accepts calls; runs until killed.
"""

from __future__ import annotations

import argparse
import asyncio

import grpc

#: The echo method's full name, as the clients call it.
METHOD = "/bench.Echo/Echo"


async def _echo(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
    return request


async def serve(port: int) -> None:
    server = grpc.aio.server()
    handler = grpc.unary_unary_rpc_method_handler(_echo)
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("bench.Echo", {"Echo": handler}),)
    )
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    print("ready", flush=True)
    await server.wait_for_termination()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    asyncio.run(serve(parser.parse_args().port))
