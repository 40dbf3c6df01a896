"""Dataset readers: each turns files on disk into a `RawDataset`; `read_dataset` picks one from the config.

Formats (`data.format`):

- `ml-100k`: MovieLens-100K as shipped inside the `recbole` wheel (`recbole/dataset_example/ml-100k/`; only its
  data files are used, recbole is never imported). With `data.path` set, the same atomic files are read from there.
- `atomic`: RecBole atomic files `{name}.inter` plus optional `{name}.user` / `{name}.item` (see `read_atomic`).
- `movielens`: the raw MovieLens files: `u.data` (100K), `ratings.dat` (1M/10M), `ratings.csv` (latest/20M/25M),
  with user and item features from `u.user`/`u.item`, `users.dat`/`movies.dat` or `movies.csv` when present.
- `table`: any CSV / TSV / Parquet file with a column mapping (see `read_table`).
- `gowalla-mat`: a MATLAB .mat file holding a users x items sparse matrix (see `read_gowalla_mat`).

Each format registers its reader with `@register_format("name")` (`tandem.registry.FORMATS`) at the end of this
file; a reader in another module of `tandem.data` is found the same way.

Ids are kept as raw tokens: str for text formats (so `u.data`, `ml-100k.inter` and their feature files agree),
whatever the column holds for Parquet, int row / column indices for .mat matrices. Every error a user can cause is
a `TandemError` naming the file, the line (1-based) or column, and what was expected.
"""
from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tandem.data._delimited import TextTable, describe_sep, read_bytes, read_delimited, require_columns, \
    require_timestamps, require_tokens, to_float
from tandem.data.raw import RawDataset, RawFeatureKind
from tandem.errors import TandemError
from tandem.registry import FORMATS, register_format

__all__ = [
    "FORMATS",
    "load_movielens_100k",
    "read_atomic",
    "read_dataset",
    "read_gowalla_mat",
    "read_movielens",
    "read_table",
]

# ------------------------------------------------------------------------------------------------ atomic files

ATOMIC_TYPES = ("token", "token_seq", "float", "float_seq")
_ATOMIC_KINDS: dict[str, RawFeatureKind] = {"token": "categorical", "token_seq": "multi", "float": "numeric"}
# Free-text columns carry no reusable signal as tokens (a title's words, a URL): never made features.
_TEXT_MARKERS = ("title", "name", "url", "description", "review", "text")


def is_text_column(name: str) -> bool:
    """Whether a side column is free text, and so not a feature: its name contains title, name, url, description,
    review or text (e.g. ml-100k's `movie_title`, a token_seq of words)."""
    lowered = name.lower()
    return any(marker in lowered for marker in _TEXT_MARKERS)


def read_atomic(directory: str | os.PathLike[str], name: str | None = None,
                exclude: Iterable[str] = ()) -> RawDataset:
    """Read RecBole atomic files `{name}.inter` and, when present, `{name}.user` / `{name}.item`.

    Files are tab separated, with a typed header `field:type`, type one of token, token_seq, float, float_seq.
    `.inter` needs `user_id` and `item_id`; `timestamp` (float) and `rating` (float) are used when present, the row
    order standing in for a missing timestamp; other columns are ignored. In `.user` / `.item` (id column
    `user_id` / `item_id`), each column becomes a feature by its declared type: token -> categorical (so
    ml-100k's `release_year:token` and `age:token` are categorical), token_seq (space separated) -> multi,
    float -> numeric (an empty cell is missing). Not features: float_seq columns (no such raw kind), free-text
    columns (see `is_text_column`) and the names in `exclude`. `name` defaults to the directory's name; `directory`
    may also be the `.inter` file itself.
    """
    directory = Path(directory).expanduser()
    if directory.suffix == ".inter" and directory.is_file():
        name = name or directory.stem
        directory = directory.parent
    if not directory.exists():
        raise TandemError(f"{directory}: directory not found")
    if not directory.is_dir():
        raise TandemError(f"{directory}: expected a directory holding atomic files {{name}}.inter, .user, .item")
    name = name or directory.name
    inter_path = directory / f"{name}.inter"
    if not inter_path.exists():
        found = sorted(path.name for path in directory.glob("*.inter"))
        hint = f" (found: {', '.join(found)}; set data.name)" if found else ""
        raise TandemError(f"{inter_path}: file not found{hint}")

    table, types = _read_atomic_file(inter_path)
    frame = table.frame
    require_columns(list(frame.columns), ["user_id", "item_id"], f"{inter_path.name}, line 1")
    interactions = pd.DataFrame({
        "user": require_tokens(frame["user_id"], "user_id", table.where),
        "item": require_tokens(frame["item_id"], "item_id", table.where),
    })
    if "timestamp" in frame.columns:
        interactions["timestamp"] = require_timestamps(to_float(frame["timestamp"], "timestamp", table.where),
                                                       "timestamp", table.where)
    else:
        interactions["timestamp"] = np.arange(len(frame), dtype=np.float64)
    if "rating" in frame.columns:
        interactions["rating"] = to_float(frame["rating"], "rating", table.where)

    excluded = set(exclude)
    user_features, user_kinds = _atomic_features(directory / f"{name}.user", "user", excluded)
    item_features, item_kinds = _atomic_features(directory / f"{name}.item", "item", excluded)
    return RawDataset(name, interactions, user_features, item_features, user_kinds, item_kinds)


def _read_atomic_file(path: Path) -> tuple[TextTable, dict[str, str]]:
    data = read_bytes(path)
    header = data[:65536].split(b"\n", 1)[0].decode("utf-8-sig", errors="replace").rstrip("\r").split("\t")
    table = read_delimited(path, "\t", data=data, numeric=[field for field in header if field.endswith(":float")])
    names, types = [], {}
    for position, header in enumerate(table.frame.columns, start=1):
        field_name, colon, field_type = str(header).strip().rpartition(":")
        if not colon or not field_name or field_type not in ATOMIC_TYPES:
            raise TandemError(
                f"{path.name}, line 1, column {position} ({str(header)!r}): expected a typed header "
                f"'name:type' with type one of {', '.join(ATOMIC_TYPES)}"
            )
        if field_name in types:
            raise TandemError(f"{path.name}, line 1, column {position}: field {field_name!r} appears twice")
        names.append(field_name)
        types[field_name] = field_type
    table.frame.columns = names
    return table, types


def _atomic_features(path: Path, entity: str, excluded: set[str]
                     ) -> tuple[pd.DataFrame | None, dict[str, RawFeatureKind]]:
    if not path.exists():
        return None, {}
    table, types = _read_atomic_file(path)
    id_field = f"{entity}_id"
    require_columns(list(table.frame.columns), [id_field], f"{path.name}, line 1")
    columns: dict[str, Any] = {entity: require_tokens(table.frame[id_field], id_field, table.where)}
    kinds: dict[str, RawFeatureKind] = {}
    for column, field_type in types.items():
        if column == id_field or column in excluded or is_text_column(column) or field_type not in _ATOMIC_KINDS:
            continue
        values = table.frame[column]
        kind = _ATOMIC_KINDS[field_type]
        columns[column] = _feature_values(values, kind, column, table)
        kinds[column] = kind
    return pd.DataFrame(columns), kinds


def _feature_values(values: pd.Series, kind: RawFeatureKind, column: str, table: TextTable,
                    split: str | None = None) -> Any:
    if kind == "numeric":
        return to_float(values, column, table.where, allow_empty=True)
    if kind == "multi":
        return pd.Series([cell.split(split) if cell.strip() else [] for cell in values.astype(str)],
                         dtype=object).to_numpy()
    stripped = values.astype(str).str.strip()
    return stripped.where(stripped != "", None).to_numpy(dtype=object)


# ------------------------------------------------------------------------------------------------ embedded ML-100K

_RECBOLE_HINT = (
    "install it with `pip install --no-deps recbole==1.2.1` (only its data files are used), or point the config "
    "at a local copy of the atomic files: data.format: atomic, data.path: <directory holding ml-100k.inter>"
)


def movielens_100k_directory() -> Path:
    """Where the installed recbole distribution keeps `dataset_example/ml-100k/`, or a TandemError saying how to
    get it. recbole itself is never imported."""
    from importlib import metadata

    try:
        distribution = metadata.distribution("recbole")
    except metadata.PackageNotFoundError:
        raise TandemError(
            "the embedded MovieLens-100K data (data.format: ml-100k) comes from the recbole package, which is "
            f"not installed; {_RECBOLE_HINT}"
        ) from None
    directory = Path(str(distribution.locate_file("recbole/dataset_example/ml-100k")))
    missing = [f"ml-100k.{suffix}" for suffix in ("inter", "user", "item")
               if not (directory / f"ml-100k.{suffix}").is_file()]
    if missing:
        raise TandemError(
            f"the installed recbole package lacks {', '.join(missing)} in {directory} (data.format: ml-100k); "
            f"reinstall it or {_RECBOLE_HINT.split(', or ', 1)[1]}"
        )
    return directory


def load_movielens_100k(directory: str | os.PathLike[str] | None = None) -> RawDataset:
    """MovieLens-100K from RecBole's atomic files: 943 users, 1,682 items, 100,000 ratings with timestamps.

    User features: age, gender, occupation (categorical; zip_code is left out: 795 near-unique values).
    Item features: release_year (categorical) and genre (multi; the atomic file's `class` column, renamed to match
    `read_movielens`). movie_title is free text, not a feature. `directory` defaults to the copy in the recbole wheel.
    """
    directory = Path(directory).expanduser() if directory is not None else movielens_100k_directory()
    raw = read_atomic(directory, "ml-100k", exclude=("zip_code",))
    if raw.item_features is not None and "class" in raw.item_feature_kinds:
        raw.item_features = raw.item_features.rename(columns={"class": "genre"})
        raw.item_feature_kinds = {("genre" if key == "class" else key): kind
                                  for key, kind in raw.item_feature_kinds.items()}
    return raw


# ------------------------------------------------------------------------------------------------ raw MovieLens

ML100K_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
    "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
)
_RATING_FIELDS = ["user", "item", "rating", "timestamp"]
_YEAR_IN_TITLE = re.compile(r"\((\d{4})\)\s*$")


def read_movielens(path: str | os.PathLike[str], name: str | None = None) -> RawDataset:
    """Raw MovieLens files.

    `path` is a ratings file or a directory holding one: `u.data` (tab separated user item rating timestamp),
    `ratings.dat` (`::` separated, ML-1M / 10M) or `ratings.csv` (with header userId,movieId,rating,timestamp).
    In a directory, features come from `u.user` / `u.item` (pipe separated, latin-1; the 19 genre flags become a
    multi `genre` feature, names from `u.genre` when present), `users.dat` / `movies.dat` (`::`, genres `A|B`) or
    `movies.csv`. User features: age, gender, occupation (categorical, zip code left out); item features:
    release_year (categorical, from the release date or the title's "(1995)") and genre (multi). Same feature
    names as `load_movielens_100k`.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise TandemError(f"{path}: file or directory not found")
    if path.is_dir():
        directory = path
        for candidate in ("u.data", "ratings.dat", "ratings.csv"):
            if (directory / candidate).is_file():
                ratings_path = directory / candidate
                break
        else:
            raise TandemError(
                f"{directory}: no MovieLens ratings file found (expected u.data, ratings.dat or ratings.csv)"
            )
    else:
        directory, ratings_path = path.parent, path
    name = name or (directory.name if path.is_dir() else path.stem)

    interactions = _movielens_ratings(ratings_path)
    user_features, user_kinds, item_features, item_kinds = None, {}, None, {}
    if path.is_dir():
        if (directory / "u.user").is_file():
            user_features, user_kinds = _ml100k_users(directory / "u.user")
        elif (directory / "users.dat").is_file():
            user_features, user_kinds = _ml1m_users(directory / "users.dat")
        if (directory / "u.item").is_file():
            item_features, item_kinds = _ml100k_items(directory / "u.item", directory / "u.genre")
        elif (directory / "movies.dat").is_file():
            item_features, item_kinds = _ml_movies(directory / "movies.dat", "::")
        elif (directory / "movies.csv").is_file():
            item_features, item_kinds = _ml_movies(directory / "movies.csv", ",")
    return RawDataset(name, interactions, user_features, item_features, user_kinds, item_kinds)


def _movielens_ratings(path: Path) -> pd.DataFrame:
    data = read_bytes(path)
    first_line = data[:4096].split(b"\n", 1)[0]
    if path.suffix == ".csv" or (b"," in first_line and b"::" not in first_line and b"\t" not in first_line):
        table = read_delimited(path, ",", quoted=True, data=data, numeric=["rating", "timestamp"])
        columns = list(table.frame.columns)
        require_columns(columns, ["userId", "movieId", "rating"], f"{path.name}, line 1")
        mapping = {"user": "userId", "item": "movieId", "rating": "rating", "timestamp": "timestamp"}
        if "timestamp" not in columns:
            del mapping["timestamp"]
        return _interactions(table, mapping)
    sep = "::" if b"::" in first_line else "\t"
    table = read_delimited(path, sep, names=_RATING_FIELDS, encoding="latin-1", data=data,
                           numeric=["rating", "timestamp"])
    return _interactions(table, {field: field for field in _RATING_FIELDS})


def _interactions(table: TextTable, mapping: Mapping[str, str]) -> pd.DataFrame:
    """The interaction frame from the mapped str columns of `table` (ids checked, numbers parsed)."""
    frame = table.frame
    out = pd.DataFrame({
        "user": require_tokens(frame[mapping["user"]], mapping["user"], table.where),
        "item": require_tokens(frame[mapping["item"]], mapping["item"], table.where),
    })
    if "timestamp" in mapping:
        out["timestamp"] = _timestamps(frame[mapping["timestamp"]], mapping["timestamp"], table.where)
    else:
        out["timestamp"] = np.arange(len(frame), dtype=np.float64)
    if "rating" in mapping:
        out["rating"] = to_float(frame[mapping["rating"]], mapping["rating"], table.where)
    return out


def _ml100k_users(path: Path) -> tuple[pd.DataFrame, dict[str, RawFeatureKind]]:
    table = read_delimited(path, "|", names=["user", "age", "gender", "occupation", "zip_code"], encoding="latin-1")
    return _categorical_frame(table, "user", ["age", "gender", "occupation"])


def _ml1m_users(path: Path) -> tuple[pd.DataFrame, dict[str, RawFeatureKind]]:
    table = read_delimited(path, "::", names=["user", "gender", "age", "occupation", "zip_code"], encoding="latin-1")
    return _categorical_frame(table, "user", ["age", "gender", "occupation"])


def _categorical_frame(table: TextTable, entity: str, features: list[str]
                       ) -> tuple[pd.DataFrame, dict[str, RawFeatureKind]]:
    columns: dict[str, Any] = {entity: require_tokens(table.frame[entity], entity, table.where)}
    for feature in features:
        columns[feature] = _feature_values(table.frame[feature], "categorical", feature, table)
    return pd.DataFrame(columns), {feature: "categorical" for feature in features}


def _ml100k_items(path: Path, genre_path: Path) -> tuple[pd.DataFrame, dict[str, RawFeatureKind]]:
    genres = list(ML100K_GENRES)
    if genre_path.is_file():
        genre_table = read_delimited(genre_path, "|", names=["genre", "index"], encoding="latin-1")
        genres = [str(value).strip() for value in genre_table.frame["genre"]]
    flags = [f"_genre_{index}" for index in range(len(genres))]
    table = read_delimited(path, "|", names=["item", "title", "release_date", "video_release_date", "url", *flags],
                           encoding="latin-1")
    frame = table.frame
    flag_values = frame[flags].apply(lambda column: column.str.strip()).to_numpy(dtype=str)
    bad = ~np.isin(flag_values, ["0", "1"])
    if bad.any():
        row, position = map(int, np.argwhere(bad)[0])
        raise TandemError(
            f"{table.where(row)}, field {6 + position} (genre {genres[position]!r}): expected a 0/1 flag, "
            f"found {flag_values[row, position]!r}"
        )
    names = np.array(genres, dtype=object)
    genre_lists = [list(names[row == "1"]) for row in flag_values]
    years = frame["release_date"].str.strip().str[-4:]
    return pd.DataFrame({
        "item": require_tokens(frame["item"], "item", table.where),
        "release_year": years.where(years.str.fullmatch(r"\d{4}"), None).to_numpy(dtype=object),
        "genre": pd.Series(genre_lists, dtype=object).to_numpy(),
    }), {"release_year": "categorical", "genre": "multi"}


def _ml_movies(path: Path, sep: str) -> tuple[pd.DataFrame, dict[str, RawFeatureKind]]:
    if sep == ",":
        table = read_delimited(path, ",", quoted=True)
        require_columns(list(table.frame.columns), ["movieId", "title", "genres"], f"{path.name}, line 1")
        id_column = "movieId"
    else:
        table = read_delimited(path, sep, names=["item", "title", "genres"], encoding="latin-1")
        id_column = "item"
    frame = table.frame
    genre_lists = [[genre for genre in cell.strip().split("|") if genre and genre != "(no genres listed)"]
                   for cell in frame["genres"].astype(str)]
    years = frame["title"].astype(str).str.extract(_YEAR_IN_TITLE, expand=False)
    return pd.DataFrame({
        "item": require_tokens(frame[id_column], id_column, table.where),
        "release_year": years.where(years.notna(), None).to_numpy(dtype=object),
        "genre": pd.Series(genre_lists, dtype=object).to_numpy(),
    }), {"release_year": "categorical", "genre": "multi"}


# ------------------------------------------------------------------------------------------------ generic tables

TABLE_KEYS = ("user", "item", "timestamp", "rating")
_EXTENSION_SEPS = {".csv": ",", ".tsv": "\t", ".tab": "\t"}


def read_table(path: str | os.PathLike[str], columns: Mapping[str, str], sep: str | None = None,
               name: str | None = None) -> RawDataset:
    """A CSV (`.csv`), TSV (`.tsv`, `.tab`) or Parquet (`.parquet`, `.pq`) file, optionally gzipped (`.csv.gz`),
    with a header row. `columns` maps `user`, `item` and optionally `timestamp`, `rating` to the file's column
    names. `sep` overrides the separator (needed for other extensions, e.g. `.txt`; `\\t` is accepted for a tab).
    CSV fields may be quoted. Timestamps may be numbers or date-time text (then seconds since the epoch); without
    a timestamp column, the row order stands in. `name` defaults to the file name without its extensions.
    """
    path = Path(path).expanduser()
    mapping = _check_column_mapping(columns)
    suffixes = [suffix.lower() for suffix in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    extension = suffixes[-1] if suffixes else ""
    name = name or path.name.split(".")[0]
    if extension in (".parquet", ".pq"):
        return RawDataset(name, _read_parquet(path, mapping))
    if sep is None:
        if extension not in _EXTENSION_SEPS:
            raise TandemError(
                f"{path.name}: cannot tell the separator from the extension {extension or '(none)'!r}; "
                f"set data.sep (e.g. ',' or '\\t'), or use .csv, .tsv or .parquet"
            )
        sep = _EXTENSION_SEPS[extension]
    sep = {"\\t": "\t", "tab": "\t", "\\s": " "}.get(sep, sep)
    if not sep:
        raise TandemError("data.sep: expected a non-empty separator")
    numeric = [mapping[key] for key in ("rating", "timestamp") if key in mapping]
    table = read_delimited(path, sep, quoted=len(sep) == 1, numeric=numeric)
    available = list(table.frame.columns)
    hint = ""
    if len(available) == 1:
        hint = f"; the header has a single field: is the separator {describe_sep(sep)} right? (set data.sep)"
    require_columns(available, list(mapping.values()), f"{path.name}, line 1", hint)
    return RawDataset(name, _interactions(table, mapping))


def _check_column_mapping(columns: Any) -> dict[str, str]:
    if not isinstance(columns, Mapping):
        raise TandemError(f"data.columns: expected a mapping like {{user: userId, item: movieId}}, found {columns!r}")
    for key, value in columns.items():
        if key not in TABLE_KEYS:
            raise TandemError(f"data.columns.{key}: unknown key; expected {', '.join(TABLE_KEYS)}")
        if not isinstance(value, str) or not value:
            raise TandemError(f"data.columns.{key}: expected a column name, found {value!r}")
    for key in ("user", "item"):
        if key not in columns:
            raise TandemError(f"data.columns.{key}: required (the name of the {key} id column)")
    seen: dict[str, str] = {}
    for key, value in columns.items():
        if value in seen:
            raise TandemError(f"data.columns: {seen[value]} and {key} both name the column {value!r}; each role "
                              f"needs its own column")
        seen[value] = key
    return dict(columns)


def _read_parquet(path: Path, mapping: dict[str, str]) -> pd.DataFrame:
    if not path.exists():
        raise TandemError(f"{path}: file not found")
    try:
        import pyarrow.parquet as pq

        available = list(pq.read_schema(path).names)
    except Exception as error:  # noqa: BLE001 - any pyarrow failure means the file is not readable Parquet
        raise TandemError(f"{path.name}: cannot read as Parquet ({error})") from None
    require_columns(available, list(mapping.values()), path.name)
    frame = pd.read_parquet(path, columns=list(dict.fromkeys(mapping.values())))

    def where(row: int, column: str | None = None) -> str:
        text = f"{path.name}, row {row + 1}"
        return f"{text}, column {column!r}" if column is not None else text

    out = pd.DataFrame({
        "user": _parquet_ids(frame[mapping["user"]], mapping["user"], where),
        "item": _parquet_ids(frame[mapping["item"]], mapping["item"], where),
    })
    if "timestamp" in mapping:
        out["timestamp"] = _timestamps(frame[mapping["timestamp"]], mapping["timestamp"], where)
    else:
        out["timestamp"] = np.arange(len(frame), dtype=np.float64)
    if "rating" in mapping:
        out["rating"] = to_float(frame[mapping["rating"]], mapping["rating"], where)
    return out


def _parquet_ids(values: pd.Series, column: str, where) -> np.ndarray:
    if values.isna().any():
        row = int(np.flatnonzero(values.isna().to_numpy())[0])
        raise TandemError(f"{where(row, column)}: expected an id, found an empty value")
    if values.dtype.kind in "iu":
        return values.to_numpy()
    return require_tokens(values.astype(str), column, where).to_numpy()


def _timestamps(values: pd.Series, column: str, where) -> np.ndarray:
    """Seconds as float64 (finite, >= 0): numbers as they are, date-time values or text converted to seconds
    since the epoch."""
    return require_timestamps(_seconds(values, column, where), column, where)


def _seconds(values: pd.Series, column: str, where) -> np.ndarray:
    if values.dtype.kind == "M" or isinstance(values.dtype, pd.DatetimeTZDtype):
        if values.isna().any():
            row = int(np.flatnonzero(values.isna().to_numpy())[0])
            raise TandemError(f"{where(row, column)}: expected a timestamp, found an empty value")
        utc = pd.to_datetime(values, utc=True)
        return (utc - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy(dtype=np.float64)
    if values.dtype.kind in "biuf":
        return to_float(values, column, where)
    numbers = pd.to_numeric(values, errors="coerce")
    if numbers.isna().all() and len(values):  # no number at all: date-time text?
        try:
            parsed = pd.to_datetime(values, errors="coerce", utc=True, format="mixed")
        except (ValueError, TypeError):
            parsed = None
        if parsed is not None and parsed.notna().any():
            bad = parsed.isna().to_numpy()
            if bad.any():
                row = int(np.flatnonzero(bad)[0])
                raise TandemError(f"{where(row, column)}: expected a timestamp (a number or a date-time), "
                                  f"found {values.iloc[row]!r}")
            return (parsed - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy(dtype=np.float64)
    return to_float(values, column, where)


# ------------------------------------------------------------------------------------------------ MATLAB matrices


def read_gowalla_mat(path: str | os.PathLike[str], key: str = "data", name: str | None = None) -> RawDataset:
    """A users x items matrix stored in a MATLAB .mat file (`scipy.io.loadmat(path)[key]`, sparse or dense), such
    as Gowalla's `gowalladata.mat` (29,858 x 40,988, 1,027,464 ones).

    Each nonzero is an interaction; user / item tokens are the 0-based row / column indices (int). There are no
    timestamps: every timestamp is 0.0, so the order within a user is the file order, which is ascending item
    index (row-major order of the matrix) — use it for the general (non-sequential) task only. A `rating` column is
    added only when the nonzeros are not all 1.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise TandemError(f"{path}: file not found")
    try:
        import scipy.io
        import scipy.sparse
    except ImportError:
        raise TandemError("reading .mat files needs scipy: pip install scipy") from None
    try:
        contents = scipy.io.loadmat(str(path))
    except Exception as error:  # noqa: BLE001 - scipy raises many kinds for a file that is not .mat
        raise TandemError(f"{path.name}: cannot read as a MATLAB .mat file ({error})") from None
    if key not in contents:
        found = ", ".join(repr(k) for k in contents if not k.startswith("__"))
        raise TandemError(f"{path.name}: no variable {key!r} (found: {found or 'none'})")
    matrix = contents[key]
    if scipy.sparse.issparse(matrix):
        matrix = scipy.sparse.csr_matrix(matrix)
    else:
        array = np.asarray(matrix)
        if array.ndim != 2 or array.dtype.kind not in "biuf":
            raise TandemError(f"{path.name}, variable {key!r}: expected a 2-d numeric users x items matrix, "
                              f"found shape {array.shape} of {array.dtype}")
        matrix = scipy.sparse.csr_matrix(array)
    matrix.eliminate_zeros()
    matrix.sort_indices()
    users = np.repeat(np.arange(matrix.shape[0], dtype=np.int64), np.diff(matrix.indptr))
    interactions = pd.DataFrame({
        "user": users,
        "item": matrix.indices.astype(np.int64),
        "timestamp": np.zeros(matrix.nnz, dtype=np.float64),
    })
    values = np.asarray(matrix.data, dtype=np.float64)
    if not np.all(values == 1.0):
        interactions["rating"] = values
    return RawDataset(name or path.stem, interactions)


# ------------------------------------------------------------------------------------------------ dispatcher

# Each format registers a reader taking the `data` keys it uses (`path`, `name`, `columns`, `sep`): a key it does
# not take is an error when given, a parameter without default is required.

@register_format("ml-100k", aliases=("ml100k", "movielens-100k"))
def _ml_100k(path: str | None = None, name: str | None = None) -> RawDataset:
    raw = load_movielens_100k(path)
    if name:
        raw.name = name
    return raw


@register_format("atomic")
def _atomic(path: str, name: str | None = None) -> RawDataset:
    return read_atomic(path, name)


@register_format("movielens")
def _movielens(path: str, name: str | None = None) -> RawDataset:
    return read_movielens(path, name)


@register_format("table", aliases=("csv", "parquet", "tsv"))
def _table(path: str, columns: dict[str, str], sep: str | None = None, name: str | None = None) -> RawDataset:
    return read_table(path, columns, sep, name)


@register_format("gowalla-mat", aliases=("gowalla", "mat"))
def _gowalla_mat(path: str, name: str | None = None) -> RawDataset:
    return read_gowalla_mat(path, name=name)


_EXAMPLES = {"columns": " (e.g. {user: userId, item: movieId, timestamp: timestamp})"}


def reader_arguments(spec: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """The registered format a `data` spec names and the arguments its reader takes, after checking that every key
    given is one the reader uses and every key it needs is given (errors name the key, as `data.<key>`)."""
    if not isinstance(spec, Mapping):
        raise TandemError(f"data: expected a mapping with a 'format' key, found {spec!r}")
    fmt = spec.get("format")
    if fmt is None:
        fmt = "ml-100k"
    if not isinstance(fmt, str):
        raise TandemError(f"data.format: expected one of {', '.join(FORMATS)}, found {fmt!r}")
    if fmt.strip().lower() not in FORMATS:
        raise TandemError(f"data.format: unknown format {spec.get('format')!r}; expected one of {', '.join(FORMATS)}")
    fmt = FORMATS.canonical(fmt.strip().lower())

    path = spec.get("path")
    if path is not None and not isinstance(path, (str, os.PathLike)):
        raise TandemError(f"data.path: expected a file or directory path, found {path!r}")
    if isinstance(path, str) and not path.strip():
        path = None
    name = spec.get("name")
    if name is not None and (not isinstance(name, str) or not name.strip()):
        raise TandemError(f"data.name: expected a non-empty string, found {name!r}")
    sep = spec.get("sep")
    if sep is not None and (not isinstance(sep, str) or not sep):
        raise TandemError(f"data.sep: expected a separator such as ',' or '\\t', found {sep!r}")
    given = {"path": path, "name": name, "columns": spec.get("columns") or None, "sep": sep}
    parameters = FORMATS.parameters(fmt)
    for key, value in given.items():
        if value is not None and key not in parameters:
            users = " or ".join(repr(other) for other in FORMATS if key in FORMATS.parameters(other))
            raise TandemError(f"data.{key}: only used with data.format {users}, not {fmt!r}; remove it")
    for key, parameter in parameters.items():
        if parameter.default is parameter.empty and given.get(key) is None:
            raise TandemError(f"data.{key}: required when data.format is {fmt!r}{_EXAMPLES.get(key, '')}")
    return fmt, {key: value for key, value in given.items() if value is not None}


def read_dataset(spec: Mapping[str, Any]) -> RawDataset:
    """Read the dataset a config's `data` section names.

    `spec`: {"format": a registered format (`tandem.registry.FORMATS`), "path": file or directory, "name": dataset
    name (atomic: the file stem), "columns": {"user": ..., "item": ..., "timestamp": ..., "rating": ...} (table
    only), "sep": separator (table only)}. Other keys are ignored (the data section holds filtering and split
    settings too). Errors name the key, as `data.<key>`.
    """
    fmt, arguments = reader_arguments(spec)
    return FORMATS[fmt](**arguments)
