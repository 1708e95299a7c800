#!/usr/bin/env python3
"""Relays TCP connections from the real node's address to the API server on loopback.

    apiserver_forward.py LISTEN_HOST:PORT TARGET_HOST:PORT --plane=STATE_DIR

The API server listens on 127.0.0.1 only, which pods (in network namespaces of their own) cannot
reach. Controllers that run in pods, such as the gateway's vLLM routers watching pods, reach it as
every in-cluster client does: the `kubernetes` Service, whose EndpointSlice the plane points here.
TLS passes through untouched; the API server's certificate names the Service's ClusterIP. `--plane`
names the plane's state dir, so `plane down` finds this process even without its PID file.
"""

from __future__ import annotations

import asyncio
import sys


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


def _address(text: str) -> tuple[str, int]:
    host, port = text.rsplit(":", 1)
    return host, int(port)


async def main(listen: str, target: str) -> None:
    target_host, target_port = _address(target)

    async def relay(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            server_reader, server_writer = await asyncio.open_connection(target_host, target_port)
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(_pipe(client_reader, server_writer), _pipe(server_reader, client_writer))

    host, port = _address(listen)
    server = await asyncio.start_server(relay, host, port)
    print(f"Relaying {listen} to {target}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
