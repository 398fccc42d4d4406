"""`python -m streams worker`: the streams worker, on uvloop."""

import mode.loop

mode.loop.use("uvloop")

from streams.app import app  # noqa: E402  (the loop policy is set before Faust makes a loop)

app.main()
