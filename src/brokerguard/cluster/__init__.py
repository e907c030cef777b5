"""Scale-out mode: events on NATS JetStream partitioned by account, workers with state in Redis.

:mod:`.stream` publishes events (``brokerguard ingest``), :mod:`.worker` consumes them
(``brokerguard worker``), :mod:`.cli` holds both commands. See the README's "Scale-out" section for
what exists and what does not yet.
"""
