"""``smpfast load``: a load generator for SMP servers that uses nothing but the wire
protocol (through smpfast.client), so it drives smpfast and the reference smp-server
alike. See docs/load.md.

Modules, one job each: ``config`` (the run's settings), ``options`` (command line),
``payload`` (checked message bodies), ``histogram`` (HdrHistogram latencies), ``stats``
(counting and the per-second series), ``tracker`` (messages in flight), ``pool``
(connections, descriptor limit, traffic counters), ``queues`` (batched NEW/KEY),
``receiver`` (decrypt, check, ACK), ``engine`` (closed/open loop send loop, warm-up,
drain), ``scenarios`` (messaging, subscribe, fanout), ``thresholds``, ``report`` (JSON
and summary), ``progress`` (live display), ``environment``, ``exitcodes``, ``main``.
"""
