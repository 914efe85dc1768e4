"""Resolving model references (hub name or local path) with one clear offline story.

Every model the project loads is named by ``name_or_path`` plus an optional
``revision``. :func:`resolve_model` turns that into a local directory: a directory
that exists is used as is; a hub name is looked up in the local Hugging Face cache
first and downloaded only when the hub is reachable and offline mode is off. When
neither works the user gets :class:`ModelUnavailableError`, whose message names the
model, says how to fetch it once and how to point the config at a local copy,
instead of a raw traceback from deep inside ``huggingface_hub``.
"""

from __future__ import annotations

import functools
import os
import socket
import urllib.parse
from pathlib import Path

from .errors import UserError

#: Model names under this prefix are tiny randomly initialised models built in code (tests, benchmarks,
#: ``ret2vqa demo --tiny``): ``tiny-random/clip`` (a ReT-2 or dual encoder on a tiny CLIP),
#: ``tiny-random/qwen2_vl`` (a generator). Their ``revision`` is the random seed (``seed0``, the default).
TINY_PREFIX = "tiny-random/"

# Weight formats we never need: skipping them keeps first downloads small.
_IGNORE_PATTERNS = ["*.msgpack", "*.h5", "*.ot", "*.onnx", "*.tflite", "*.mlmodel", "onnx/*", "openvino/*"]


class ModelUnavailableError(UserError, RuntimeError):
    """A model is neither a local directory, nor cached, nor downloadable right now."""

    def __init__(self, name_or_path: str, revision: str | None, reason: str, config_field: str | None = None):
        self.name_or_path = name_or_path
        self.revision = revision
        field = f"`{config_field}`" if config_field else "the config's `name_or_path`"
        head = f"model '{name_or_path}'{f' (revision {revision})' if revision else ''} is not available: {reason}."
        if is_tiny_model(name_or_path):
            how = ""
        elif looks_like_path(name_or_path):
            how = f"\n  Point {field} at a directory that holds the model (a hub id also works)."
        else:
            how = (
                f"\n  Fetch it once on a machine with internet access:\n"
                f"      {download_command(name_or_path, revision)}\n"
                f"  (the cache is {hub_cache_dir()}; copy it over or set HF_HOME), "
                f"or point {field} at a local directory that holds the model."
            )
        self.hint = how
        super().__init__(head + how)


def download_command(name_or_path: str, revision: str | None = None) -> str:
    """The shell command that fetches ``name_or_path`` into the cache, for the installed ``huggingface_hub``.

    ``huggingface_hub`` 0.34 introduced the ``hf`` command and later releases dropped
    ``huggingface-cli``, so the message names the one the user actually has.
    """
    rev = f" --revision {revision}" if revision else ""
    return f"{_hub_cli()} download {name_or_path}{rev}"


def _hub_cli() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        parts = version("huggingface_hub").split(".")[:2]
        major, minor = int(parts[0]), int("".join(c for c in parts[1] if c.isdigit()) or 0)
    except (PackageNotFoundError, ValueError, IndexError):
        return "hf"
    return "hf" if (major, minor) >= (0, 34) else "huggingface-cli"


def is_tiny_model(name_or_path: str | None) -> bool:
    """Whether ``name_or_path`` names a tiny random model (``tiny-random/<family>``)."""
    return isinstance(name_or_path, str) and name_or_path.startswith(TINY_PREFIX)


def tiny_model(name_or_path: str, revision: str | None = None, field: str = "name_or_path") -> tuple[str, int]:
    """``("clip", 2)`` for ``tiny-random/clip`` at revision ``seed2`` (``None``: seed 0)."""
    from .errors import ConfigError

    family = name_or_path[len(TINY_PREFIX):]
    if not is_tiny_model(name_or_path) or not family:
        raise ConfigError(f"not a tiny model name: {name_or_path!r} (expected {TINY_PREFIX}<family>)", field)
    if revision in (None, ""):
        return family, 0
    text = str(revision)
    if not (text.startswith("seed") and text[4:].isdigit()):
        raise ConfigError(f"the revision of a tiny random model is its seed, e.g. 'seed0', got {revision!r}",
                          field.rsplit(".", 1)[0] + ".revision" if "." in field else "revision")
    return family, int(text[4:])


def is_offline() -> bool:
    """True when the user asked for offline mode (``HF_HUB_OFFLINE`` / ``TRANSFORMERS_OFFLINE``)."""
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(var, "").strip().lower() in {"1", "true", "yes", "on"}:
            return True
    try:
        from huggingface_hub import constants

        return bool(constants.HF_HUB_OFFLINE)
    except Exception:  # pragma: no cover - very old huggingface_hub
        return False


def hub_cache_dir() -> str:
    """Where the Hugging Face hub cache lives on this machine."""
    try:
        from huggingface_hub import constants

        return str(constants.HF_HUB_CACHE)
    except Exception:  # pragma: no cover
        return os.path.expanduser("~/.cache/huggingface/hub")


def ret2vqa_cache_dir() -> str:
    """Where ret2vqa keeps what it derives from downloaded models (e.g. converted released checkpoints).

    ``$RET2VQA_CACHE``, else ``$XDG_CACHE_HOME/ret2vqa``, else ``~/.cache/ret2vqa``.
    """
    explicit = os.environ.get("RET2VQA_CACHE")
    if explicit:
        return os.path.expanduser(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return os.path.join(base, "ret2vqa")


def cached_model_dir(name_or_path: str, revision: str | None = None) -> str | None:
    """The local directory holding ``name_or_path`` without any network access, or ``None``."""
    if Path(name_or_path).expanduser().is_dir():
        return str(Path(name_or_path).expanduser())
    if looks_like_path(name_or_path):
        return None
    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(name_or_path, revision=revision, local_files_only=True)
    except Exception:
        return None


def resolve_model(name_or_path: str, revision: str | None = None, config_field: str | None = None) -> str:
    """Return a local directory for ``name_or_path``, downloading it only if allowed and possible.

    Raises :class:`ModelUnavailableError` with a message that says what to do otherwise.
    """
    if not name_or_path:
        raise ModelUnavailableError(str(name_or_path), revision, "no model name or path was given", config_field)
    if is_tiny_model(name_or_path):
        raise ModelUnavailableError(
            name_or_path, revision, "tiny random models are built in code, not loaded: open them through the "
            "composition root (rag.components) or a `ret2vqa` command", config_field)
    local = cached_model_dir(name_or_path, revision)
    if local is not None:
        return local
    if looks_like_path(name_or_path):
        raise ModelUnavailableError(
            name_or_path, revision, f"no such local directory: {Path(name_or_path).expanduser()}", config_field
        )
    if is_offline():
        raise ModelUnavailableError(
            name_or_path, revision, "it is not in the local cache and offline mode is on (HF_HUB_OFFLINE=1)", config_field
        )
    if not hub_reachable():
        raise ModelUnavailableError(
            name_or_path, revision, f"it is not in the local cache and the hub ({hub_endpoint()}) cannot be reached",
            config_field,
        )
    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(name_or_path, revision=revision, ignore_patterns=_ignore_patterns(name_or_path,
                                                                                                   revision))
    except Exception as exc:  # network errors, 404s, gated repos: all end the same way for the user
        reason = f"it is not in the local cache and the hub could not provide it ({type(exc).__name__}: {_first_line(exc)})"
        raise ModelUnavailableError(name_or_path, revision, reason, config_field) from exc


def hub_endpoint() -> str:
    try:
        from huggingface_hub import constants

        return str(constants.ENDPOINT)
    except Exception:  # pragma: no cover
        return "https://huggingface.co"


@functools.lru_cache(maxsize=None)
def hub_reachable(timeout: float = 5.0) -> bool:
    """Whether the hub's host accepts a connection (checked once per process).

    Without this probe an unreachable hub costs a minute of retries and a screen of
    warnings per model before the real error. Behind a proxy (``HTTPS_PROXY``) the
    probe cannot decide, so the hub is assumed reachable.
    """
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True
    parsed = urllib.parse.urlparse(hub_endpoint())
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname, port), timeout=timeout):
            return True
    except OSError:
        return False


def _ignore_patterns(repo_id: str, revision: str | None) -> list[str]:
    """Skip weight formats we never load; skip PyTorch ``.bin`` weights when safetensors exist."""
    patterns = list(_IGNORE_PATTERNS)
    try:
        from huggingface_hub import HfApi

        files = HfApi().list_repo_files(repo_id, revision=revision)
    except Exception:  # listing is an optimisation; snapshot_download reports real errors
        return patterns
    if any(f.endswith(".safetensors") for f in files):
        patterns.append("*.bin")
    return patterns


def looks_like_path(name: str) -> bool:
    """Hub ids are ``name`` or ``org/name``; anything else (``./x``, ``/abs``, ``a/b/c``, ``~``) is a path."""
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or "\\" in name


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else ""
