"""The streaming decoder for one huge top-level JSON object: same result as json.load, bounded memory."""

import json

import pytest

from eval.jsonstream import iter_json_items
from ret2vqa.io import MalformedRows, RowError

DOC = {
    "http://a/%C3%A9": {
        "title": 'A {x} "q"',
        "t": ["x\\y", "é\n", "}]"],
        "n": 123456789,
        "f": -1.5e10,
        "b": True,
        "z": None,
    },
    "k2": [1, 2, {"q": "}"}],
    "k3": 98765,
    "": "empty key",
    "flag": "🇨🇳 surrogate pairs when escaped",
}


@pytest.mark.parametrize("indent, ascii_only", [(None, False), (2, False), (None, True)])
@pytest.mark.parametrize("chunk_size", [1, 3, 7, 64, 1 << 20])
def test_same_items_as_json_load_at_any_chunk_boundary(tmp_path, indent, ascii_only, chunk_size):
    path = tmp_path / "doc.json"
    path.write_text(json.dumps(DOC, indent=indent, ensure_ascii=ascii_only), encoding="utf-8")
    items = list(iter_json_items(path, chunk_size=chunk_size))
    assert [(i.key, i.value) for i in items] == list(DOC.items())


def test_line_numbers_and_offsets(tmp_path):
    path = tmp_path / "doc.json"
    text = json.dumps(DOC, indent=2, ensure_ascii=False)
    path.write_text(text, encoding="utf-8")
    items = list(iter_json_items(path, chunk_size=5))
    for item in items:
        assert text[item.offset :].startswith(json.dumps(item.key, ensure_ascii=False))
        assert text[: item.offset].count("\n") + 1 == item.line


def test_top_level_array_and_empty_containers(tmp_path):
    path = tmp_path / "a.json"
    path.write_text('[ {"a": 1}, 2 ,"x"]', encoding="utf-8")
    assert [(i.key, i.value) for i in iter_json_items(path, chunk_size=2)] == [(0, {"a": 1}), (1, 2), (2, "x")]
    path.write_text(" {} ", encoding="utf-8")
    assert list(iter_json_items(path)) == []


@pytest.mark.parametrize("ascii_only", [False, True])
def test_every_truncation_point_is_reported_after_the_complete_members(tmp_path, ascii_only):
    text = json.dumps(DOC, indent=1, ensure_ascii=ascii_only)
    path = tmp_path / "cut.json"
    for cut in range(1, len(text) - 1):
        path.write_text(text[:cut], encoding="utf-8")
        errors = MalformedRows(strict=False, max_logged=0)
        items = list(iter_json_items(path, errors=errors, chunk_size=4))
        assert errors.count == 1, cut
        assert "truncated" in errors.examples[0]
        assert [(i.key, i.value) for i in items] == list(DOC.items())[: len(items)]
    with pytest.raises(RowError, match="truncated"):
        list(iter_json_items(path))  # strict by default


@pytest.mark.parametrize(
    "text, message",
    [
        ('{"a": 1 "b": 2}', "expected ',' or '}'"),
        ('{"a": 1,\n "b": tru}', "invalid JSON"),
        ("{a: 1}", "expected a string key"),
        ('{"a" 1}', "expected ':'"),
        ("42", "expected a top-level JSON object or array"),
        ("", "empty file"),
    ],
)
def test_syntax_errors_raise_even_when_lenient(tmp_path, text, message):
    path = tmp_path / "bad.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(RowError, match=message) as info:
        list(iter_json_items(path, errors=MalformedRows(strict=False)))
    assert str(info.value).startswith(str(path))


def test_syntax_error_names_its_line(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{\n"a": 1,\n"b": [1, 2,, 3]\n}', encoding="utf-8")
    with pytest.raises(RowError, match=r"bad\.json:3: invalid JSON"):
        list(iter_json_items(path, chunk_size=3))


def test_trailing_data_is_reported(tmp_path):
    path = tmp_path / "t.json"
    path.write_text('{"a": 1} {"b": 2}', encoding="utf-8")
    errors = MalformedRows(strict=False)
    assert [i.key for i in iter_json_items(path, errors)] == ["a"]
    assert errors.count == 1 and "unexpected data after" in errors.examples[0]


def test_memory_stays_bounded_on_many_members(tmp_path):
    """A stream of 20k members never holds more than a few chunks of text."""
    import eval.jsonstream as js

    path = tmp_path / "big.json"
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("{")
        fh.write(",".join(f'"k{i}": {{"t": "{"x" * 50}"}}' for i in range(20000)))
        fh.write("}")
    largest = 0
    original = js._Reader.read_more

    def spy(self, at_least=0):
        nonlocal largest
        result = original(self, at_least)
        largest = max(largest, len(self.buf))
        return result

    js._Reader.read_more = spy
    try:
        count = sum(1 for _ in iter_json_items(path, chunk_size=4096))
    finally:
        js._Reader.read_more = original
    assert count == 20000
    assert path.stat().st_size > 1_000_000 and largest < 3 * 4096


def test_one_member_larger_than_the_limit_fails(tmp_path):
    path = tmp_path / "huge.json"
    path.write_text('{"a": "' + "x" * 5000 + '"}', encoding="utf-8")
    with pytest.raises(RowError, match="exceeds 1000 characters"):
        list(iter_json_items(path, chunk_size=64, max_value_chars=1000))
