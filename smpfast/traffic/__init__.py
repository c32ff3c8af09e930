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
versions connect with ALPN ``smp/1`` and min = max = that version; from v11 every block is
encrypted (block encryption, one 16-byte tag per block inside the 16384 bytes).

Without an address the tool starts its own smpfast server on loopback and lets it offer
up to v18 (``--server-max-version``): smpfast announces only v6-v7 when it serves
clients, but its codecs and block encryption speak every version up to 18, and the
commands measured here (NEW, KEY, SUB, SEND, MSG, ACK, DEL) exist at all of them. Against
an external server the versions are what it offers.

The output starts with the verdict: whether SimpleX v3.1's claim (90 subscriptions take
one block instead of 90) holds at each version measured, v18 included, or why v18 was
not measured; then one table per version (``--details``: per direction, SMP and TLS bytes).

JSON document (``--json FILE``)::

    {"verdict": {"n": 90, "measured", "holds", "holds_at": [v...], "fails_at": [v...],
         "v18": <the claim entry of v18> | null, "v18_note": why v18 is missing | null},
     "tool": "smpfast traffic", "address": "smp://<fingerprint>@host:port" (no password),
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

``--mode services`` measures something else: a messaging service (v19) re-subscribing N
associated queues with N batched SUBs against one SUBS (``services.py``; its own table and
JSON document with ``"mode": "services"``).

This package's ``__init__`` imports nothing heavy: ``smpfast --help`` loads ``cli``.
"""

BLOCK_SIZE = 16384
DEFAULT_SWEEP = (1, 10, 30, 90, 135, 255)
DEFAULT_MESSAGE_SIZE = 128
PHASES = ("subscribe", "send", "receive")
MODES = ("unbatched", "batched")
CLAIM_N = 90
VERDICT_VERSION = 18  # the claim is checked again at the highest version, with block encryption
ANNOTATED_N = (90, 135)  # the plot writes the reduction at these N
DEFAULT_VERSIONS = (6, 7, 18)  # oldest (no ALPN), last without block encryption, newest
IN_PROCESS_MAX_VERSION = 18
