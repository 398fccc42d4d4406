"""Who is calling, and the limits on proving it (contract v1, "Auth"; v1.1, sessions).

Modules: `tokens` (access tokens, JWT), `refresh_tokens` (rotated refresh tokens; a family is a
session), `session_end` (ending sessions and telling every instance), `passwords` (argon2id),
`throttle` (login and registration attempts per account and address), `identity` (the caller of
a REST request), `routes` (`/api/v1/auth/*`).
"""
