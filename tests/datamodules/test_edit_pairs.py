"""The edit command's pairs file: JSON Lines, a JSON list or CSV; a bad row is a failure record, a file of another
format is one line."""

import json

import pytest

from preciseinv.datamodules.edit_pairs import read_rows
from preciseinv.errors import PreciseInvError

ROW = {"image": "a.png", "source": "a cat", "target": "a dog"}


def test_json_lines_a_json_list_and_csv_give_the_same_rows(tmp_path):
    (tmp_path / "p.jsonl").write_text(json.dumps(ROW) + "\n\n" + json.dumps(ROW) + "\n")
    (tmp_path / "p.json").write_text(json.dumps([ROW, ROW], indent=2))  # one list over many lines
    (tmp_path / "p.csv").write_text("image,source,target\na.png,a cat,a dog\na.png,a cat,a dog\n")
    (tmp_path / "bom.csv").write_text("\ufeffimage,source,target\na.png,a cat,a dog\n", encoding="utf-8")  # Excel's
    (tmp_path / "bom.jsonl").write_text("\ufeff" + json.dumps(ROW) + "\n", encoding="utf-8")  # UTF-8 export
    for name in ("p.jsonl", "p.json", "p.csv"):
        assert read_rows(tmp_path / name) == [ROW, ROW]
    assert read_rows(tmp_path / "bom.csv") == [ROW] and read_rows(tmp_path / "bom.jsonl") == [ROW]


def test_a_bad_row_is_a_failure_record_and_the_rest_are_kept(tmp_path):
    (tmp_path / "p.jsonl").write_text(json.dumps(ROW) + "\nnot json\n[1, 2]\n")
    rows = read_rows(tmp_path / "p.jsonl")
    assert rows[0] == ROW
    assert rows[1]["_error"].startswith("line 2 is not JSON") and rows[2] == {"_error": "line 3 is not a JSON object"}


@pytest.mark.parametrize("name,text,message", [
    ("p.txt", "a.png\ta cat\ta dog\nb.png\ta cup\ta mug\n", r"no line is a JSON object \(line 1 is not JSON"),
    ("p.jsonl", "[1]\n[2]\n", r"no line is a JSON object \(line 1 is not a JSON object\)"),
    ("p.csv", "file;prompt\na.png;a cat\n", r"has no image column \(its header: file;prompt\)"),
])
def test_a_file_of_another_format_is_one_line(tmp_path, name, text, message):
    (tmp_path / name).write_text(text)
    with pytest.raises(PreciseInvError, match=message + r".*\(JSON Lines\), a JSON list of such objects, or a \.csv") as err:
        read_rows(tmp_path / name)
    assert "\n" not in str(err.value)
