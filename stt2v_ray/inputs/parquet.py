"""Parquet prompt datasets: one file or a folder of files, on any fsspec filesystem.

Columns named like VideoRequest fields are read as requests (null = not set); every
other column passes through as Arrow scalars for the results table. Rows stream in
batches: a dataset is never loaded whole. Row indices count from 0 across all files,
in sorted file order.
"""
from __future__ import annotations

import bisect
import posixpath
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from stt2v_ray.inputs.errors import InputIssue
from stt2v_ray.inputs.requests import FIELDS
from stt2v_ray.storage import parent_uri, to_uri

PARQUET_SUFFIXES = (".parquet", ".parq")


@dataclass(frozen=True)
class ParquetRow:
    index: int                      # 0-based across the whole dataset
    file: str                       # URI of the file holding the row
    fields: dict[str, Any]          # known columns as Python values (None = not set)
    extra: dict[str, pa.Scalar]     # every other column, typed as `ParquetDataset.extra_schema`


class ParquetDataset:
    def __init__(self, fs: fsspec.AbstractFileSystem, path: str, uri: str, batch_size: int = 4096):
        self.fs, self.uri, self.batch_size = fs, uri, batch_size
        self.issues: list[InputIssue] = []
        self.row_counts: list[int] = []
        self.starts: list[int] = []
        self.extra_schema = pa.schema([])
        if fs.isdir(path):
            root = path.rstrip("/")
            self.base_dir = to_uri(fs, root)  # absolute, even when `uri` is a relative path
            self.files = sorted(p for p in fs.find(root) if _is_data_file(posixpath.relpath(p, root)))
            if not self.files:
                self.issues.append(InputIssue(uri, "", "", f"no {' or '.join(PARQUET_SUFFIXES)} files in this folder"))
        else:
            self.base_dir = parent_uri(to_uri(fs, path))
            self.files = [path]
        self._read_footers()

    def _read_footers(self) -> None:
        """Row counts and schemas from the file footers only."""
        schemas: list[pa.Schema] = []
        for path in self.files:
            try:
                with self.fs.open(path, "rb") as f:
                    pf = pq.ParquetFile(f)
                    self.row_counts.append(pf.metadata.num_rows)
                    schemas.append(pf.schema_arrow)
            except (pa.ArrowException, OSError) as error:
                self.issues.append(InputIssue(self.file_uri(path), "", "", f"cannot read as Parquet: {error}"))
        if self.issues:
            self.row_counts = []
            return
        self.starts = [sum(self.row_counts[:i]) for i in range(len(self.row_counts))]
        extras = [pa.schema([f for f in s if f.name not in FIELDS]) for s in schemas]
        try:
            self.extra_schema = pa.unify_schemas(extras) if extras else pa.schema([])
        except (pa.ArrowInvalid, pa.ArrowTypeError) as error:
            self.issues.append(InputIssue(self.uri, "", "", f"files disagree on the types of extra columns: {error}"))
        if self.files and not self.issues and sum(self.row_counts) == 0:
            self.issues.append(InputIssue(self.uri, "", "", "the dataset has no rows"))

    def file_uri(self, path: str) -> str:
        return to_uri(self.fs, path)

    def count(self) -> int:
        return sum(self.row_counts)

    def location(self, index: int) -> tuple[str, str]:
        """(file URI, "row N") of a global row index."""
        file = bisect.bisect_right(self.starts, index) - 1
        return self.file_uri(self.files[file]), f"row {index}"

    def rows(self, with_extra: bool = True) -> Iterator[ParquetRow]:
        if self.issues:
            raise ValueError(f"{self.uri}: cannot read rows of an unreadable dataset: {self.issues[0]}")
        for path, start in zip(self.files, self.starts, strict=False):
            with self.fs.open(path, "rb") as f:
                yield from self._file_rows(pq.ParquetFile(f), self.file_uri(path), start, with_extra)

    def _file_rows(self, pf: pq.ParquetFile, file: str, index: int, with_extra: bool) -> Iterator[ParquetRow]:
        names = pf.schema_arrow.names
        known = [n for n in names if n in FIELDS]
        extra = [n for n in names if n not in FIELDS] if with_extra else []
        # A batch needs at least one column to carry its row count.
        columns = known + extra or names[:1]
        for batch in pf.iter_batches(batch_size=self.batch_size, columns=columns):
            fields = batch.select(known).to_pylist() if known else [{}] * batch.num_rows
            arrays = {n: batch.column(n) for n in extra}
            for j in range(batch.num_rows):
                values = {}
                if with_extra:
                    for target in self.extra_schema:
                        array = arrays.get(target.name)
                        scalar = array[j] if array is not None else pa.scalar(None, target.type)
                        values[target.name] = scalar if scalar.type == target.type else scalar.cast(target.type)
                yield ParquetRow(index, file, fields[j], values)
                index += 1


def _is_data_file(relative: str) -> bool:
    # Skip Spark/Hadoop markers and hidden files (_SUCCESS, .part.crc, _metadata).
    parts = relative.split("/")
    return relative.lower().endswith(PARQUET_SUFFIXES) and not any(p.startswith(("_", ".")) for p in parts)
