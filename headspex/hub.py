"""Whether the Hugging Face hub may and can be reached: the one rule for every loader.

Model loading (:mod:`headspex.models`) and MMLU loading (:mod:`headspex.tasks.mmlu`) both
ask before they let transformers / datasets go to the network, because those libraries
retry for minutes when there is none. The rule:

Offline by the environment (:func:`hub_offline_by_env`)
    any of ``HF_HUB_OFFLINE``, ``HF_DATASETS_OFFLINE``, ``TRANSFORMERS_OFFLINE`` holds one of
    ``1``, ``true``, ``yes``, ``on`` (any case, surrounding whitespace ignored): the values
    huggingface_hub and datasets read as true. Any other value (unset, empty, ``0``,
    ``false``, ``no``, ``off`` …) does not make the hub offline. One variable is enough:
    whoever sets any of them asks headspex not to use the network.
Reachable (:func:`hub_reachable`)
    not offline by the environment, and a TCP connection to the host of ``HF_ENDPOINT``
    (default ``https://huggingface.co``) on its port (443 for https, 80 for http, unless
    the URL names one) opens within ``timeout_s`` seconds (default 2). Nothing is sent.
"""

from __future__ import annotations

import os
import socket
from urllib.parse import urlparse

from .errors import HeadspexError

#: The environment variables that switch the hub off (huggingface_hub, datasets, transformers).
OFFLINE_VARIABLES: tuple[str, ...] = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")
#: Values (lower case, stripped) that count as "set".
TRUE_VALUES: frozenset[str] = frozenset({"1", "true", "yes", "on"})
DEFAULT_ENDPOINT = "https://huggingface.co"


def hub_offline_by_env() -> bool:
    """Whether an offline variable is set to a true value (module docstring), read now."""
    return any(os.environ.get(name, "").strip().lower() in TRUE_VALUES for name in OFFLINE_VARIABLES)


def hub_address() -> tuple[str, int]:
    """``(host, port)`` of the hub endpoint: ``HF_ENDPOINT`` or ``https://huggingface.co``."""
    endpoint = os.environ.get("HF_ENDPOINT", "").strip() or DEFAULT_ENDPOINT
    url = urlparse(endpoint)
    try:
        port = url.port
    except ValueError:
        raise HeadspexError(
            f"HF_ENDPOINT={endpoint!r} has an invalid port; set it to a URL such as {DEFAULT_ENDPOINT}"
        ) from None
    return url.hostname or "huggingface.co", port or (80 if url.scheme == "http" else 443)


def hub_reachable(timeout_s: float = 2.0) -> bool:
    """Whether the hub can be used: not offline by the environment and its port answers.

    Args:
        timeout_s: seconds to wait for the TCP connection (not spent when offline by env).

    Returns:
        ``False`` at once when :func:`hub_offline_by_env`, else whether a connection to
        :func:`hub_address` opened within ``timeout_s``.
    """
    if hub_offline_by_env():
        return False
    try:
        with socket.create_connection(hub_address(), timeout=timeout_s):
            return True
    except OSError:
        return False
