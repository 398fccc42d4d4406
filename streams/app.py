"""The streams worker's Faust app: `python -m streams worker` runs it."""

from __future__ import annotations

from config.settings import WorkerSettings, load
from config.worker import make_app

settings = load(WorkerSettings)
app = make_app("messenger-streams", settings)
