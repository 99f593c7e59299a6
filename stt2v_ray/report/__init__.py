"""`stt2v-ray report OUTPUT`: one self-contained report.html of a finished render (no Ray, no models)."""
from __future__ import annotations

from stt2v_ray.report.load import RunData, load_run
from stt2v_ray.report.page import render_page
from stt2v_ray.storage import atomic_output, join_uri, storage_options_for

__all__ = ["RunData", "load_run", "render_page", "write_report"]


def write_report(output: str, storage_options: dict | None = None) -> str:
    """Write OUTPUT/report.html atomically and return its URI (ValueError: no render there)."""
    options = storage_options_for(output, storage_options)
    data = load_run(output, options)
    uri = join_uri(output, "report.html")
    with atomic_output(uri, options) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(render_page(data))
    return uri
