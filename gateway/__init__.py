"""The aiohttp gateway: REST and WebSocket for clients, commands to Kafka, reads from PostgreSQL."""
