"""The streams worker's Faust app: `python -m streams worker` runs it."""

from __future__ import annotations

from config.settings import StreamsSettings, load
from runtime.faust_app import make_app
from streams import chat_agent, user_agent

settings = load(StreamsSettings)
app = make_app("messenger-streams", settings)
chat_decider = chat_agent.register(app, settings)
user_decider = user_agent.register(app, settings)
