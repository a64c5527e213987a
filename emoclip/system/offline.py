"""Offline runs fail in seconds: the Hugging Face hub is checked once, at the start of an entry.

When a run may download (its config names a hub id, or it reads a checkpoint whose config may),
and the hub cannot be reached, HF_HUB_OFFLINE=1 is set before any Hugging Face library is
imported: loading then uses the local cache and folders only, and what is not there fails at
once with emoclip's message (emoclip.models.clip_backbone), instead of minutes of retries.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
PROBE_SECONDS = 3.0
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def hub_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def hub_reachable(endpoint: str, seconds: float = PROBE_SECONDS) -> bool:
    """Whether an HTTP request to the hub gets any answer within `seconds` (proxies from the
    environment are used, as the hub's own client does)."""
    answered = threading.Event()

    def probe() -> None:
        try:
            urllib.request.urlopen(urllib.request.Request(endpoint, method="HEAD"), timeout=seconds)
        except urllib.error.HTTPError:  # an answer, if not a 200
            pass
        except (OSError, ValueError):
            return
        answered.set()

    # A thread: name resolution is not bounded by the socket timeout.
    threading.Thread(target=probe, daemon=True).start()
    return answered.wait(seconds + 0.5)


def config_strings(node: Any) -> Iterator[str]:
    """Every string value in a config given as plain containers (dicts and lists)."""
    if isinstance(node, dict):
        for value in node.values():
            yield from config_strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from config_strings(value)
    elif isinstance(node, str):
        yield node


def hub_ids(node: Any) -> Iterator[str]:
    """Strings in a config that look like hub model ids (`org/name`) and are no local path."""
    for text in config_strings(node):
        if _HUB_ID.match(text) and not Path(text).exists():
            yield text


def go_offline_if_hub_unreachable(config: dict) -> bool:
    """Set HF_HUB_OFFLINE=1 when the run may download and the hub cannot be reached; return
    whether the run is offline. `config` is the entry's config as a plain container."""
    if any(os.environ.get(name, "").strip() not in ("", "0") for name in OFFLINE_VARIABLES):
        return True
    wanted = sorted(set(hub_ids(config.get("model"))) | set(checkpoint_hub_ids(config)))
    if not wanted:
        return False  # nothing to download (the tiny CLIP, a word-level tokenizer, an LSTM)
    endpoint = hub_endpoint()
    if hub_reachable(endpoint):
        return False
    os.environ["HF_HUB_OFFLINE"] = "1"
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None:  # imported already (a test, an earlier job of a sweep)
        constants.HF_HUB_OFFLINE = True
    log.warning(
        "%s cannot be reached: working offline (HF_HUB_OFFLINE=1)%s; models and tokenizers "
        "load from the Hugging Face cache (HF_HOME) or from local folders only",
        endpoint,
        f" for {', '.join(wanted)}" if wanted else "",
    )
    return True


def checkpoint_hub_ids(config: dict) -> Iterator[str]:
    """The hub ids the model of the checkpoint file `ckpt_path` names (its stored config, read
    as data); none for a checkpoint whose towers use no hub model, or no readable file (the
    entry then says what is wrong with it)."""
    path = config.get("ckpt_path")
    if not isinstance(path, str) or not Path(path).is_file():
        return
    from emoclip.system.checkpoint_io import load_checkpoint_file  # torch: only for a checkpoint

    try:
        stored = load_checkpoint_file(path, mmap=True).get("hyper_parameters")
    except Exception:  # noqa: BLE001 (not a checkpoint: restoring it says so)
        return
    if isinstance(stored, dict):
        yield from hub_ids(stored.get("model"))


def check_model_folder(name_or_path: str, key: str) -> None:
    """A model named by a path (`/models/clip`, `./clip`, `~/clip`, `a/b/c`) that is not there
    is said plainly, not as the hub's "Repo id must be in the form ..." it would become."""
    text = str(name_or_path)
    looks_like_path = (
        text.startswith(("/", ".", "~")) or "\\" in text or text.count("/") > 1
    ) and not _HUB_ID.match(text)
    if looks_like_path and not Path(text).expanduser().exists():
        from emoclip.errors import BackboneLoadError

        raise BackboneLoadError(
            f"{key}={text}: no such folder; expected a local model folder (saved with "
            "save_pretrained) or a hub id such as openai/clip-vit-base-patch32"
        )
