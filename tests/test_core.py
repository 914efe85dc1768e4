"""Shared infrastructure: config dataclasses from YAML, line-numbered reading, model resolution."""

import dataclasses
import gzip
import json
from typing import Literal, Optional

import pytest

from ret2vqa.config import ConfigError, from_dict, from_yaml, to_dict
from ret2vqa.errors import MissingFileError
from ret2vqa.hub import ModelUnavailableError, looks_like_path, resolve_model
from ret2vqa.io import MalformedRows, RowError, iter_csv, iter_jsonl, require_fields, write_jsonl


@dataclasses.dataclass
class Inner:
    m: int = 16
    names: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Outer:
    path: str
    mode: Literal["a", "b"] = "a"
    rate: float = 0.5
    limit: Optional[int] = None
    inner: Inner = dataclasses.field(default_factory=Inner)

    def __post_init__(self):
        if self.rate > 1:
            raise ConfigError("must be <= 1", "rate")


def test_from_dict_builds_nested_and_coerces():
    cfg = from_dict(Outer, {"path": "x", "rate": 1, "inner": {"m": 4, "names": ["a"]}})
    assert cfg == Outer(path="x", rate=1.0, inner=Inner(m=4, names=["a"]))
    assert isinstance(cfg.rate, float)
    assert to_dict(cfg) == {"path": "x", "mode": "a", "rate": 1.0, "limit": None, "inner": {"m": 4, "names": ["a"]}}


@pytest.mark.parametrize("data, message", [
    ({"path": "x", "bogus": 1}, r"^cfg\.yaml: bogus: unknown field for Outer"),
    ({"path": "x", "inner": {"mm": 1}}, r"^cfg\.yaml: inner\.mm: unknown field for Inner"),
    ({"path": "x", "mode": "c"}, r"^cfg\.yaml: mode: must be one of \['a', 'b'\]"),
    ({"path": "x", "inner": {"m": "16"}}, r"^cfg\.yaml: inner\.m: expected an integer"),
    ({"path": "x", "limit": True}, r"^cfg\.yaml: limit"),
    ({"path": "x", "rate": 2}, r"^cfg\.yaml: rate: must be <= 1"),
    ({}, r"^cfg\.yaml: path: required"),
])
def test_from_dict_errors_name_the_field(data, message):
    with pytest.raises(ConfigError, match=message):
        from_dict(Outer, data, where="cfg.yaml")


def test_from_yaml_sections_and_missing_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("outer:\n  path: p\n  inner: {m: 8}\n")
    assert from_yaml(Outer, path, section="outer").inner.m == 8
    with pytest.raises(ConfigError, match="missing section 'other'"):
        from_yaml(Outer, path, section="other")
    with pytest.raises(MissingFileError, match="config file not found"):
        from_yaml(Outer, tmp_path / "nope.yaml")


def test_a_key_written_twice_in_a_yaml_config_is_an_error_naming_both_lines(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("outer:\n  path: p\n  inner: {m: 8}\n  path: q\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: invalid YAML[\s\S]*key 'path' a second time \(first on line 2\)"
                                          r"[\s\S]*line 4"):
        from_yaml(Outer, path, section="outer")
    path.write_text("outer: {path: p, inner: {m: 8, m: 9}}\n")  # flow style, one line
    with pytest.raises(ConfigError, match="key 'm' a second time"):
        from_yaml(Outer, path, section="outer")
    path.write_text("base: &b {m: 8}\nouter:\n  path: p\n  inner:\n    <<: *b\n    m: 9\n")  # a merge, overridden
    assert from_yaml(Outer, path, section="outer").inner.m == 9


def test_iter_jsonl_reports_bad_lines_and_reads_gzip(tmp_path):
    path = tmp_path / "rows.jsonl.gz"
    with gzip.open(path, "wt") as fh:
        fh.write('{"a": 1}\n\n[1, 2]\n{"a": 2\n{"a": 3}\n')
    errors = MalformedRows()
    rows = list(iter_jsonl(path, errors))
    assert rows == [(1, {"a": 1}), (5, {"a": 3})]
    assert errors.count == 2 and "rows.jsonl.gz:3: expected a JSON object" in errors.examples[0]
    assert "rows.jsonl.gz:4: invalid JSON" in errors.examples[1] and "2 malformed row(s)" in errors.summary()
    with pytest.raises(RowError, match=r"rows\.jsonl\.gz:3:"):
        list(iter_jsonl(path))  # strict by default
    assert list(iter_jsonl(path, MalformedRows(), start_line=5)) == [(5, {"a": 3})]


def test_iter_csv_line_numbers_follow_multiline_records(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text('x,y\n1,"two\nlines"\n3\n4,5\n')
    errors = MalformedRows()
    assert list(iter_csv(path, errors)) == [(2, {"x": "1", "y": "two\nlines"}), (5, {"x": "4", "y": "5"})]
    assert errors.examples == [f"{path}:4: expected 2 fields, got 1"]


def test_require_fields_and_write_jsonl(tmp_path):
    with pytest.raises(RowError, match=r"f\.jsonl:7: missing field 'b'"):
        require_fields({"a": 1, "b": None}, ["a", "b"], "f.jsonl", 7)
    out = tmp_path / "sub" / "o.jsonl"
    assert write_jsonl(out, [{"q": "é"}]) == 1 and write_jsonl(out, [{"q": 2}], append=True) == 1
    assert [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()] == [{"q": "é"}, {"q": 2}]


def test_resolve_model_local_offline_and_paths(tmp_path, monkeypatch):
    assert resolve_model(str(tmp_path)) == str(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelUnavailableError) as exc:
        resolve_model("some-org/uncached-model", revision="v2", config_field="generator.model")
    text = str(exc.value)
    assert "some-org/uncached-model" in text and "offline mode is on" in text
    assert "hf download some-org/uncached-model --revision v2" in text and "`generator.model`" in text
    with pytest.raises(ModelUnavailableError, match="no such local directory") as exc:
        resolve_model(str(tmp_path / "missing" / "dir"))
    assert "huggingface-cli" not in str(exc.value)
    assert looks_like_path("./x") and looks_like_path("a/b/c") and not looks_like_path("org/name")
