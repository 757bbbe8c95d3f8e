"""Use cases between the HTTP routers and the scheduler: one module per task.

Each resolves the model (UnknownModel -> 404, ModelUnavailable -> 503), asks the engine to plan
work units, runs them as one scheduler job, and returns typed results. No HTTP here."""
