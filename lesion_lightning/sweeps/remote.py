"""`sweep create` / `sweep agent`: thin wrappers over `wandb.sweep` and `wandb.agent` for users with a
W&B server or account.

Both check first, within a few seconds, that the W&B server answers and that an API key is known,
so a machine without a server fails fast with a clear message instead of wandb's long retry loop;
and `create` runs `wandb.sweep` under a time limit as well.
"""

from __future__ import annotations

import netrc
import os
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Callable

DEFAULT_BASE_URL = "https://api.wandb.ai"
NO_SERVER_HINT = ("`sweep create` and `sweep agent` need a W&B server or account (wandb has no offline sweep "
                  "controller); on this machine use `lesion-lightning sweep local CONFIG --count N` instead.")


class WandbUnavailable(RuntimeError):
    """No W&B server can be reached, or no credentials are known for it."""


def base_url() -> str:
    url = os.environ.get("WANDB_BASE_URL")
    if not url:
        try:
            import wandb

            url = wandb.Settings().base_url
        except Exception:  # pragma: no cover - defensive
            url = None
    return (url or DEFAULT_BASE_URL).rstrip("/")


def check_server(url: str | None = None, timeout: float = 5.0) -> str:
    """Raise WandbUnavailable unless the W&B server at `url` answers HTTP within `timeout` seconds."""
    url = url or base_url()
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise WandbUnavailable(f"WANDB_BASE_URL={url!r} is not an http(s) URL. {NO_SERVER_HINT}")
    try:
        with urllib.request.urlopen(urllib.request.Request(f"{url}/healthz", method="GET"), timeout=timeout):
            pass
    except urllib.error.HTTPError:
        pass  # the server answered (any HTTP status means something is there)
    except (urllib.error.URLError, OSError, ValueError) as err:
        reason = getattr(err, "reason", err)
        raise WandbUnavailable(f"cannot reach the W&B server at {url} ({reason}). {NO_SERVER_HINT}") from err
    return url


def api_key_known(url: str) -> bool:
    """An API key from WANDB_API_KEY, an identity token file, or ~/.netrc (`wandb login`) for this host."""
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    host = urllib.parse.urlparse(url).hostname or ""
    path = os.environ.get("NETRC") or os.path.join(os.path.expanduser("~"), ".netrc")
    try:
        return netrc.netrc(path).authenticators(host) is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def preflight(timeout: float = 5.0) -> str:
    """Fail fast (WandbUnavailable) when no W&B server answers or no credentials are known; return the URL."""
    url = check_server(timeout=timeout)
    if not api_key_known(url) and not sys.stdin.isatty():
        raise WandbUnavailable(f"not logged in to the W&B server at {url}: run `wandb login` (or set WANDB_API_KEY) "
                               f"first. {NO_SERVER_HINT}")
    return url


def _with_deadline(fn: Callable[[], Any], seconds: float, what: str) -> Any:
    """Run fn in a daemon thread; raise WandbUnavailable if it has not returned after `seconds`."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as err:  # noqa: BLE001 - re-raised in the caller's thread
            box["error"] = err

    worker = threading.Thread(target=target, daemon=True, name=f"wandb-{what}")
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        raise WandbUnavailable(f"{what} did not finish within {seconds:g} s (is the W&B server at {base_url()} "
                               f"healthy?). {NO_SERVER_HINT}")
    if "error" in box:
        raise box["error"]
    return box.get("value")


def create_sweep(config: dict[str, Any], project: str | None = None, entity: str | None = None,
                 timeout: float = 60.0, connect_timeout: float = 5.0) -> str:
    """Register the sweep with the W&B server; returns its id (print `entity/project/id` for agents)."""
    preflight(connect_timeout)
    import wandb

    return _with_deadline(lambda: wandb.sweep(config, entity=entity, project=project), timeout, "wandb.sweep")


def run_agent(sweep_id: str, count: int | None = None, project: str | None = None, entity: str | None = None,
              connect_timeout: float = 5.0) -> None:
    """Run W&B's agent for `sweep_id` (`entity/project/id` or an id plus --project/--entity) until the
    sweep or `count` is done. Trials log online: the server needs their metric to steer the sweep."""
    mode = os.environ.get("WANDB_MODE", "").lower()
    if mode in ("offline", "disabled", "dryrun"):
        raise WandbUnavailable(f"WANDB_MODE={mode}: a W&B agent reports each trial's metric to the server, so it "
                               "needs online mode (unset WANDB_MODE or set WANDB_MODE=online). For an offline "
                               "sweep use `lesion-lightning sweep local`.")
    preflight(connect_timeout)
    # The training CLI defaults W&B to offline when WANDB_MODE is unset; agent trials must log online.
    os.environ["WANDB_MODE"] = "online"
    import wandb

    wandb.agent(sweep_id, count=count, project=project, entity=entity)
