"""Where the engine's state lives between events and across restarts.

:class:`~brokerguard.engine.state.MemoryState` keeps everything in memory; :class:`SqliteState`
(the embedded default) keeps the same records in one SQLite file, and
:class:`~brokerguard.stores.redis.RedisState` (scale-out; import it from
:mod:`brokerguard.stores.redis`) in Redis. Every store turns records into
bytes with :mod:`brokerguard.stores.codec`, so the bytes are the same whichever store holds them.
"""

from brokerguard.stores.codec import decode, encode
from brokerguard.stores.sqlite import SqliteState, StateFileError

__all__ = ["SqliteState", "StateFileError", "decode", "encode"]
