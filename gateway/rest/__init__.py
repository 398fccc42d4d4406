"""The REST side (contract v1): routes that translate HTTP to the use cases (`gateway.usecases`)
and back, and what every HTTP answer shares.

Modules: `users`, `chats` (the `/api/v1/users*` and `/api/v1/chats*` routes), `errors` (the error
envelope, `STATUS_BY_CODE`, the middleware, `parse_body`), `validation` (query and path
parameters), `http_headers` (security headers on every response), `docs` (`/docs`: Swagger UI and
the specifications). The auth routes live with the rest of auth (`gateway.auth.routes`).
"""
