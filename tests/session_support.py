"""Driving a ServerSession and a ClientSession against each other in memory."""

from __future__ import annotations

from smpfast.protocol import versions as V
from smpfast.protocol.session import ClientSession, ServerSession


def split_blocks(data: bytes) -> list[bytes]:
    """``data_to_send()`` output cut into its 16 KB blocks."""
    assert len(data) % V.BLOCK_SIZE == 0
    return [data[i : i + V.BLOCK_SIZE] for i in range(0, len(data), V.BLOCK_SIZE)]


def exchange_hellos(server: ServerSession, client: ClientSession) -> tuple[list, list]:
    """The server hello to the client, the client's answer to the server: (client events,
    server events)."""
    [hello] = split_blocks(server.data_to_send())
    client_events = client.receive_block(hello)
    server_events = []
    for block in split_blocks(client.data_to_send()):
        server_events += server.receive_block(block)
    return client_events, server_events
