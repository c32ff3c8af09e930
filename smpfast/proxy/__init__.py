"""The SMP proxy role's I/O: outbound links to destination relays (``relays``)."""
