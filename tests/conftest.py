"""Session-wide test setup: offline switches first, before anything imports the HF stack."""

from __future__ import annotations

import os
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HOME", tempfile.mkdtemp(prefix="recal-gym-hf-"))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
