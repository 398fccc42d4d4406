"""Projection agents that turn events into PostgreSQL read models, and the commands around them."""
