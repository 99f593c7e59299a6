"""Errors that end a run before anything is rendered (the CLI exits 2 for them, no traceback)."""


class ExecutorStartError(RuntimeError):
    """The executor could not start: e.g. the cluster cannot host the configured pools."""
