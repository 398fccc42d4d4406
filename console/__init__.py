"""The operator console: the pages every streams and projections worker serves beside Faust's own
views (`console.pages.register`, called by `runtime.faust_app.add_operator_pages`).

Tables (counts per partition merged across the workers of the app), keys and values, topics and
lag, bad records and rebuild progress; HTML for a person, the same data as JSON for scripts
(`schemas.console`). Everything but the login page, the style sheet and the icon needs the operator token
(`runtime.operator_auth`).
"""
