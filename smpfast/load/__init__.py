"""``smpfast load``: a load generator for SMP servers that uses nothing but the wire
protocol (through smpfast.client), so it drives smpfast and the reference smp-server
alike. See docs/load.md.

Modules, one job each: ``config`` (the run's settings), ``options`` (command line),
``payload`` (checked message bodies), ``histogram`` (HdrHistogram latencies), ``stats``
(counting and the per-second series), ``tracker`` (messages in flight), ``pool``
(connections, descriptor limit, traffic counters), ``queues`` (batched NEW/KEY),
``receiver`` (decrypt, check, ACK), ``engine`` (closed/open loop send loop, warm-up,
stages, drain), ``stages`` (the --stages schedule), ``control`` (Ctrl-C, the start
signal), ``scenarios`` (messaging, subscribe, fanout), ``thresholds``, ``failures`` (why
a run cannot be trusted), ``diagnose`` (cause and fix of a run that cannot start),
``cpu`` (the generator's CPU use), ``report`` (JSON and summary), ``merge`` (reports and
workers into one), ``workers`` (--workers processes), ``progress`` (live display),
``environment``, ``exitcodes``, ``main``.
"""
