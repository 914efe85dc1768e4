"""The bundled demo knowledge base (passages, images, questions); see PROVENANCE.md."""

from pathlib import Path

DEMO_DIR = Path(__file__).resolve().parent
KB_FILE = DEMO_DIR / "kb.jsonl"
QUESTIONS_FILE = DEMO_DIR / "questions.jsonl"
