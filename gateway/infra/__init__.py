"""What the gateway runs on: its connections to PostgreSQL, Redis and Kafka, and the parts
built on them that every side uses.

Modules: `resources` (pool, Redis client, producer, opened and closed with the app),
`command_bus` (commands out, replies back, per instance), `consistency` (read-your-writes: the
projections' progress), `read_store` (reads from the read models), `limits` (the users' write
budget in Redis), `healing` (how long-lived connections reconnect: one backoff, one metric),
`health` (`/healthz`, `/metrics`).
"""
