"""Answer post-processing: decoded chat output -> short answer string (a pure function)."""

import pytest

from generator import postprocess_answer


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        # trailing period, whitespace
        ("Paris.", "Paris"),
        ("  Eiffel Tower \n", "Eiffel Tower"),
        # answer prefixes, stacked with role names and markdown
        ("Answer: 1889", "1889"),
        ("The answer is: **1889**. It was completed in 1889.", "1889"),
        ("The answer is 1889", "1889"),
        ("A: 42", "42"),
        ("Short answer - Rome", "Rome"),
        ("ASSISTANT: Answer: Eiffel Tower", "Eiffel Tower"),
        ("assistant\nParis", "Paris"),
        ("Assistant: Answer:\nLouvre", "Louvre"),
        # chat artefacts end the answer
        ("Eiffel Tower<|im_end|>\n<|im_start|>user", "Eiffel Tower"),
        ("Paris</s>", "Paris"),
        ("Rome<end_of_utterance>Assistant: more", "Rome"),
        ("[/INST] Venice", "Venice"),
        # first line, first sentence
        ("- Leonardo da Vinci\n- Michelangelo", "Leonardo da Vinci"),
        ("It is 330 metres tall. It was built in 1889.", "It is 330 metres tall"),
        ("Yes! It is.", "Yes"),
        # periods that do not end a sentence
        ("St. Louis is the city.", "St. Louis is the city"),
        ("J. R. R. Tolkien.", "J. R. R. Tolkien"),
        ("It is 3.14 metres. Yes.", "It is 3.14 metres"),
        ("c. 1200 AD.", "c. 1200 AD"),
        ("Mt. Everest", "Mt. Everest"),
        # a final abbreviation keeps its period
        ("Washington, D.C.", "Washington, D.C."),
        ("U.S.", "U.S."),
        # quotes and emphasis
        ('"Mona Lisa"', "Mona Lisa"),
        ("“The Starry Night”.", "The Starry Night"),
        ("*Felis catus*", "Felis catus"),
        # words that merely start like a prefix are kept
        ("Answers vary", "Answers vary"),
        ("Anaconda", "Anaconda"),
        ("What?", "What?"),
        ("1889 AD", "1889 AD"),
        # nothing left
        ("", ""),
        ("   \n ", ""),
        ("<|im_end|>", ""),
    ],
)
def test_postprocess_answer(raw, expected):
    assert postprocess_answer(raw) == expected


def test_postprocess_is_idempotent():
    for raw in ["The answer is: **1889**. It was completed in 1889.", "Washington, D.C.", "St. Louis is the city."]:
        once = postprocess_answer(raw)
        assert postprocess_answer(once) == once
