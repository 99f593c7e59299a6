"""Errors that end a run before anything is rendered (the CLI exits 2 for them, no traceback)."""


class ExecutorStartError(RuntimeError):
    """The executor could not start: e.g. the cluster cannot host the configured pools."""


class OutputClashError(ValueError):
    """Ids already recorded in the output with other request or settings digests."""

    def __init__(self, output: str, clashes: list[str], total: int):
        self.ids = clashes
        more = f" (and {total - len(clashes)} more)" if total > len(clashes) else ""
        super().__init__(
            f"{output} already holds {total} video(s) rendered from another request or other settings: "
            f"{', '.join(clashes)}{more}. Use another --output, or --overwrite to render them again.")
