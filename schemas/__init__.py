"""Pydantic models of events, WebSocket frames and REST bodies, and their (de)serialization. No I/O."""
