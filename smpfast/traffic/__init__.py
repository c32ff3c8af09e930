"""``smpfast traffic``: SMP's traffic reduction from batching, measured on the wire.

For every batch size N of a sweep and every protocol version, N queues are created (setup,
not counted), then four phases run, each on fresh connections, and each is measured as the
difference of the client's counters around it:

``subscribe``  N SUBs: one ``batch`` (batched) or N requests each waiting for its reply
               (unbatched).
``send``       N SENDs (one per queue, signed with the queue's sender key), the sender's
               connection.
``receive``    the recipient's connection while the N messages arrive (N MSG events, one per
               queue) and it ACKs them: the ACKs in one batch, or one by one.

Counted per direction: SMP blocks (``blocks_sent``/``blocks_received``: transmission
blocks, the hello blocks are setup), SMP bytes (16384 per block) and TLS bytes on the
socket (``tls_bytes_out``/``tls_bytes_in``: TLS record headers, tags and any TLS messages
included). Reductions are unbatched / batched.

Version 6 connects without ALPN (a pre-v7 client: the server then offers only v6); other
versions connect with ALPN ``smp/1`` and min = max = that version.

JSON document (``--json FILE``)::

    {"tool": "smpfast traffic", "address": "smp://<fingerprint>@host:port" (no password),
     "server": "in-process" | "external", "server_versions": [min, max],
     "block_size": 16384, "message_size": <SEND body bytes>, "sweep": [N...],
     "versions": [v...],
     "measurements": [{"version", "alpn": "smp/1" | null, "n", "phase", "mode":
         "batched" | "unbatched", "seconds",
         "client_to_server": {"blocks", "transmissions", "smp_bytes", "tls_bytes"},
         "server_to_client": {... same ...}}, ...],
     "reductions": [{"version", "n", "phase",
         "client_to_server" | "server_to_client" | "total": {"blocks", "smp_bytes",
         "tls_bytes"} (unbatched / batched, null when batched is 0)}, ...],
     "claim": [{"version", "n": 90, "unbatched_blocks", "batched_blocks",
         "unbatched_smp_bytes", "batched_smp_bytes", "unbatched_tls_bytes",
         "batched_tls_bytes", "holds"}]}   # SimpleX v3.1: 90 SUB blocks -> one block

``claim`` is about the subscription requests (client to server) of the N = 90 row; it
"holds" when 90 unbatched SUBs took 90 blocks and the batched ones took one.

This package's ``__init__`` imports nothing heavy: ``smpfast --help`` loads ``cli``.
"""

BLOCK_SIZE = 16384
DEFAULT_SWEEP = (1, 10, 30, 90, 135, 255)
DEFAULT_MESSAGE_SIZE = 128
PHASES = ("subscribe", "send", "receive")
MODES = ("unbatched", "batched")
CLAIM_N = 90
