"""The embedded local cluster: how `ray.init` is called when no cluster is given, and its dashboard."""
from __future__ import annotations

import os
import socket
import sys

from stt2v_ray.config import RunSettings

DASHBOARD_PORT = 8265  # Ray's usual port; another one when it is taken (several runs on one machine)


def dashboard_installed() -> bool:
    """The dashboard needs ray[default] (aiohttp and friends), not only ray."""
    try:
        import ray.dashboard.optional_deps  # noqa: F401  (what Ray itself checks before starting it)
    except ImportError:
        return False
    return True


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _any_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def local_init_kwargs(settings: RunSettings, num_cpus: int, num_gpus: int) -> dict:
    """ray.init arguments of the embedded cluster; the dashboard only on loopback, only when installed and wanted."""
    dashboard = settings.ray.dashboard and dashboard_installed()
    kwargs = dict(address="local", num_cpus=num_cpus, num_gpus=num_gpus, include_dashboard=dashboard, log_to_driver=True)
    if dashboard:
        kwargs.update(dashboard_host="127.0.0.1",
                      dashboard_port=DASHBOARD_PORT if _free(DASHBOARD_PORT) else _any_port())
    return kwargs


def announce_dashboard(context, stream=None) -> str | None:
    """Print the dashboard's address (from ray.init's context) on stderr; None when it has none."""
    url = getattr(context, "dashboard_url", None) or None
    if url:
        url = url if url.startswith("http") else f"http://{url}"
        print(f"Ray dashboard: {url} (this machine only; from elsewhere: ssh -L {url.rsplit(':', 1)[1]}:127.0.0.1:"
              f"{url.rsplit(':', 1)[1]} HOST)", file=stream or sys.stderr, flush=True)
    return url


def default_num_cpus(need_cpus: float) -> int:
    # logical CPUs may exceed the cores: they are a scheduling budget, not threads
    return max(os.cpu_count() or 1, int(need_cpus) + 1)
