"""Turning what a chat model decodes into a short answer string.

KB-VQA answers are scored against short references ("1889", "Eiffel Tower"), so a
model's "The answer is: **1889**. It was completed ..." must become "1889". The rules,
applied in order by :func:`postprocess_answer`:

1. chat artefacts go: special tokens (``<|im_end|>``, ``</s>``, ``<end_of_utterance>``,
   ``[INST]``...), which also end the answer; a leading role name (``ASSISTANT:``,
   ``assistant``);
2. answer prefixes go: ``Answer:``, ``A:``, ``The answer is``, ``Short answer:``...;
3. only the first non-empty line is kept, then its first sentence (a period inside an
   abbreviation or initial - "St. Louis", "J. R. R. Tolkien", "3.14" - does not end one);
4. list bullets, markdown emphasis, wrapping quotes and trailing punctuation go (a final
   period that belongs to an abbreviation such as "D.C." stays).

The function is pure and never raises; an empty string comes back as ``""``.
"""

from __future__ import annotations

import re

# Special tokens of the supported families (and common others). They are replaced by a
# newline so that whatever a model emits after an end-of-turn token is cut off.
_SPECIAL_TOKENS = re.compile(
    r"<\|[^|<>\s]{1,40}\|>"  # <|im_end|>, <|endoftext|>, <|eot_id|>, <|image_pad|> ...
    r"|</?s>|<eos>|<bos>|<pad>|<unk>"
    r"|<end_of_utterance>|<end_of_turn>|<start_of_turn>"
    r"|<fake_token_around_image>|<global-img>|<row_\d+_col_\d+>|<image>|<video>"
    r"|\[/?INST\]"
)
_ROLE_PREFIX = re.compile(r"^(?:assistant|ASSISTANT|Assistant|model|gpt|GPT)\s*(?::|\n)\s*")
_ANSWER_PREFIXES = (
    # "Answer: x", "Short answer - x", "The final answer is: x"
    re.compile(r"^(?:the\s+)?(?:final\s+|short\s+|correct\s+)?answer(?:\s+is)?\s*[:：\-–]\s*", re.IGNORECASE),
    # "The answer is x"
    re.compile(r"^the\s+(?:final\s+|short\s+|correct\s+)?answer\s+is\s+", re.IGNORECASE),
    # "A: x", "Ans: x"
    re.compile(r"^(?:a|ans)\s*[:：]\s*", re.IGNORECASE),
)
_BULLET = re.compile(r"^(?:[-*•]\s+|\d+[.)]\s+(?=\D))")
_EMPHASIS = re.compile(r"(\*\*|__|\*|`)(.+?)\1")
_QUOTE_PAIRS = {'"': '"', "'": "'", "“": "”", "‘": "’", "«": "»", "`": "`"}
# Words after which a period does not end a sentence.
_ABBREVIATIONS = frozenset(
    """mr mrs ms dr prof sr jr st mt ft vs etc inc ltd co corp no nos vol ca approx est
    jan feb mar apr jun jul aug sep sept oct nov dec gen col lt sgt capt rev hon fr
    e.g i.e a.m p.m u.s u.k""".split()
)
_SENTENCE_END = re.compile(r"[.!?](?=\s+\S)")
_DOTTED_ABBREVIATION = re.compile(r"(?:\b[A-Za-z]\.){2,}$")  # U.S.  D.C.  e.g.


def postprocess_answer(text: str) -> str:
    """Reduce a decoded model output to a short answer (see the module docstring for the rules)."""
    if not text:
        return ""
    text = _SPECIAL_TOKENS.sub("\n", text).strip()
    text = _strip_prefixes(text)
    text = _first_line(text)
    text = _strip_prefixes(text)  # "ASSISTANT:\nAnswer: x" leaves a prefix on the line
    text = _BULLET.sub("", text)
    text = _EMPHASIS.sub(r"\2", text)
    text = _first_sentence(text)
    text = _strip_trailing_punctuation(_unquote(text.strip()))
    text = _unquote(text)
    return re.sub(r"\s+", " ", text).strip()


def _strip_prefixes(text: str) -> str:
    for _ in range(4):  # prefixes can stack: "ASSISTANT: Answer: x"
        before = text
        text = _ROLE_PREFIX.sub("", text).lstrip()
        for pattern in _ANSWER_PREFIXES:
            text = pattern.sub("", text).lstrip()
        if text == before:
            break
    return text


def _first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return ""


def _first_sentence(text: str) -> str:
    for match in _SENTENCE_END.finditer(text):
        end = match.start()
        if text[end] == "." and _period_is_not_final(text[:end]):
            continue
        return text[: end + (0 if text[end] == "." else 1)]
    return text


def _period_is_not_final(before: str) -> bool:
    """True when a period right after ``before`` belongs to an abbreviation, an initial or a number."""
    word = re.split(r"[\s(\[\"“]", before)[-1]
    bare = word.rstrip(".").lower()
    if not bare:
        return False
    if bare in _ABBREVIATIONS or bare.replace(".", "") in {a.replace(".", "") for a in _ABBREVIATIONS if "." in a}:
        return True
    if len(bare) == 1 and bare.isalpha():  # initials: "J. R. R. Tolkien", "c. 1200"
        return True
    return bool(_DOTTED_ABBREVIATION.search(word + "."))  # "U.S." style


def _unquote(text: str) -> str:
    while len(text) >= 2 and text[0] in _QUOTE_PAIRS and text[-1] == _QUOTE_PAIRS[text[0]]:
        text = text[1:-1].strip()
    return text


def _strip_trailing_punctuation(text: str) -> str:
    text = text.rstrip(" ,;:!")
    while text.endswith(".") and not _DOTTED_ABBREVIATION.search(text):
        text = text[:-1].rstrip(" ,;:!")
    return text
