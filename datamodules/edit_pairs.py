"""``python -m preciseinv.edit``: (image, source prompt, target prompt) rows from a JSONL or CSV file, or one row.

Columns: ``image`` (a path, relative to the file's folder unless absolute), ``source`` and ``target`` (also
``source_prompt`` / ``target_prompt``), optional ``id``. A row without an image file, or without a source or
target prompt, becomes a failure record. Ids: the row's ``id``, else ``<row number>-<image stem>``.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from torch.utils.data import Dataset

from preciseinv.datamodules.base import InversionDataModule, read_sample, safe_id
from preciseinv.errors import PreciseInvError


FORMAT = ('one {"image": ..., "source": ..., "target": ...} object per line (JSON Lines), a JSON list of such '
          'objects, or a .csv with columns image, source, target')


def read_rows(pairs: str | Path) -> list[dict]:
    """The file's rows; a row that cannot be read is a failure record, a file none of whose rows can be is one
    line."""
    path = Path(pairs).expanduser()
    if not path.is_file():
        raise PreciseInvError(f"pairs file {str(path)!r} does not exist: pass pairs=<file.jsonl or file.csv>")
    if path.suffix.lower() == ".csv":
        with open(path, newline="", encoding="utf-8-sig") as f:  # -sig: a spreadsheet's byte-order mark
            reader = csv.DictReader(f)
            rows = list(reader)
        if rows and not {"image", "path"} & set(reader.fieldnames or ()):
            raise PreciseInvError(f"pairs file {str(path)!r} has no image column (its header: "
                                  f"{', '.join(reader.fieldnames or ())}): {FORMAT}")
        return rows
    text = path.read_text(encoding="utf-8-sig")
    try:  # a whole-file JSON list of rows
        whole = json.loads(text)
    except json.JSONDecodeError:
        whole = None
    if isinstance(whole, list):
        return [row if isinstance(row, dict) else {"_error": f"item {n} is not a JSON object"}
                for n, row in enumerate(whole, start=1)]
    rows = []
    for n, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                row = {"_error": f"line {n} is not JSON ({err.msg})"}
            rows.append(row if isinstance(row, dict) else {"_error": f"line {n} is not a JSON object"})
    if rows and all("_error" in row for row in rows):  # not one row read: the file's format, not its rows
        raise PreciseInvError(f"pairs file {str(path)!r}: no line is a JSON object ({rows[0]['_error']}): {FORMAT}")
    return rows


def _field(row: dict, *names: str):
    for name in names:
        if row.get(name) is not None:
            return str(row[name])
    return None


class EditRows(Dataset):
    def __init__(self, rows: list[dict], base: Path, resolution: int, exclude: dict[str, dict],
                 crop: str = "center"):
        items = []
        for n, row in enumerate(rows):
            image = _field(row, "image", "path")
            stem = Path(image).stem if image else "row"
            sample_id = safe_id(_field(row, "id") or f"{n:06d}-{stem}")
            done = exclude.get(sample_id)  # its record: the prompts it was edited with
            prompts = {"prompt": _field(row, "source", "source_prompt"),
                       "target": _field(row, "target", "target_prompt")}
            if done is None or any(k in done and done[k] != v for k, v in prompts.items()):  # new, or other prompts
                items.append((sample_id, row, image))
        self.items, self.base, self.resolution, self.crop = items, base, resolution, crop

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        sample_id, row, image = self.items[index]
        source, target = _field(row, "source", "source_prompt"), _field(row, "target", "target_prompt")
        path = (self.base / image) if image and not Path(image).is_absolute() else (Path(image) if image else None)
        problem = row.get("_error") or (None if image else "no image in this row") or \
            (None if source is not None else "no source prompt") or (None if target else "no target prompt")
        if problem is None and not path.is_file():
            problem = f"image {str(path)!r} does not exist"
        if problem:
            return {"id": sample_id, "source": str(path or ""), "prompt": "", "error": problem}
        sample = read_sample(sample_id, str(path), source, path, self.resolution, self.crop)
        sample["target"] = target
        return sample


class EditPairsDataModule(InversionDataModule):
    keeps_aspect_ratio = False  # edit pairs are batched as they come

    def __init__(self, pairs: str | None = None, image: str | None = None, source: str | None = None,
                 target: str | None = None, **kwargs):
        super().__init__(**kwargs)
        if not pairs and not image:
            raise PreciseInvError("give image=<path> source='...' target='...', or pairs=<file.jsonl or file.csv>")
        if pairs and image:
            raise PreciseInvError(f"give image=<path> (one edit) or pairs=<file> (many), not both: got image={image} "
                                  f"and pairs={pairs}")
        if image:  # one edit from the command line: a mistake in it is one line, not a failure record
            prompts = {"source": source, "target": target}
            missing = " and ".join(f"{name}='...'" for name, text in prompts.items() if not text)
            if missing:
                raise PreciseInvError(f"image={image} needs {missing} too: the prompt it was made with and the one to "
                                      "edit it to")
            if not Path(image).expanduser().is_file():
                raise PreciseInvError(f"image={image}: no such file")
        self.pairs, self.row = pairs, {"image": image, "source": source, "target": target}

    def build_dataset(self) -> EditRows:
        if self.pairs:
            return EditRows(read_rows(self.pairs), Path(self.pairs).expanduser().parent, self.resolution,
                            self.exclude, self.crop)
        return EditRows([{**self.row, "id": Path(self.row["image"]).stem}], Path.cwd(), self.resolution,
                        self.exclude, self.crop)
