"""Scale-out mode: events on NATS JetStream partitioned by account, workers with state in Redis.

:mod:`.stream` publishes events (``brokerguard ingest``); :mod:`.partition` says which engine sees
which event; :mod:`.leases` shares the partitions among the workers; :mod:`.worker` consumes them
(``brokerguard worker``), :mod:`.records` writes to PostgreSQL; :mod:`.status` and
:mod:`.metrics` are for operations; :mod:`.cli` holds the commands. See the README's "Scale-out"
section and ``docs/deployment.md``.
"""
