"""Test-wide setup: offline hub, deterministic torch, shared paths.

Tests build tiny randomly initialised models from real ``transformers`` config
classes; nothing is downloaded. ``HF_HUB_OFFLINE`` is set before any Hugging Face
library is imported so that an accidental hub lookup fails fast instead of hanging.
"""

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED = REPO_ROOT.parent / "shared"
FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """``../shared`` beside the checkout (real InfoSeek rows, public-domain images)."""
    return SHARED


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return FIXTURES
