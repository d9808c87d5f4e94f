"""Replication of a queue to NATS JetStream and back, exactly once (needs `pip install tape[nats]`).

    from tape.replicate import Replicator, Ingester
    with Replicator("/data/orders", "nats://127.0.0.1:4222", stream="ORDERS") as r:
        r.run(follow=True)
    with Ingester("nats://127.0.0.1:4222", stream="ORDERS", path="/data/orders-copy") as i:
        i.run(follow=True)

`import tape` does not load this package nor nats-py.
"""

from tape.errors import ReplicationError
from tape.replicate.frame import Identity
from tape.replicate.ingester import Ingester
from tape.replicate.replicator import Replicator, replication_status

__all__ = ["Replicator", "Ingester", "ReplicationError", "Identity", "replication_status"]
