"""Use cases between the front doors and the scheduler: one module per task.

Each resolves the model (raising UnknownModel or ModelUnavailable), asks the engine to plan work
units, runs them as one scheduler job, and returns typed results. No HTTP here: a caller's
mistake is a domain error (errors.InvalidRequest), which each front door maps."""
