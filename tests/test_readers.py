"""Dataset readers: every format on tiny files, the embedded ML-100K, and clear errors for bad input."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tandem.data import readers
from tandem.data.readers import (
    load_movielens_100k,
    read_atomic,
    read_dataset,
    read_gowalla_mat,
    read_movielens,
    read_table,
)
from tandem.errors import TandemError

GOWALLA = Path("/work/shared/data/gowalla/gowalladata.mat")


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def error_of(call, *args, **kwargs) -> str:
    with pytest.raises(TandemError) as info:
        call(*args, **kwargs)
    return str(info.value)


# ------------------------------------------------------------------------------------------------ embedded ML-100K


@pytest.fixture(scope="module")
def ml100k():
    try:
        readers.movielens_100k_directory()
    except TandemError as error:
        pytest.skip(str(error))
    return load_movielens_100k()


def test_embedded_ml100k_counts_and_features(ml100k):
    inter = ml100k.interactions
    assert len(inter) == 100_000
    assert inter["user"].nunique() == 943 and inter["item"].nunique() == 1682
    assert set(inter.columns) == {"user", "item", "timestamp", "rating"}
    assert inter["timestamp"].dtype == np.float64 and inter["rating"].between(1, 5).all()
    assert ml100k.user_feature_kinds == {"age": "categorical", "gender": "categorical", "occupation": "categorical"}
    assert ml100k.item_feature_kinds == {"release_year": "categorical", "genre": "multi"}
    assert len(ml100k.user_features) == 943 and len(ml100k.item_features) == 1682
    toy_story = ml100k.item_features.set_index("item").loc["1"]
    assert list(toy_story["genre"]) == ["Animation", "Children's", "Comedy"]
    # tokens agree between interactions and features
    assert set(inter["user"]) == set(ml100k.user_features["user"])


def test_ml100k_via_dispatcher_and_name(ml100k):
    raw = read_dataset({"format": "ml-100k", "path": None, "name": None, "columns": {}, "sep": None})
    assert raw.name == "ml-100k" and len(raw.interactions) == 100_000


def test_ml100k_missing_recbole_says_how_to_get_it(monkeypatch):
    from importlib import metadata

    def missing(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "distribution", missing)
    message = error_of(load_movielens_100k)
    assert "pip install --no-deps recbole==1.2.1" in message
    assert "data.format: atomic" in message and "data.path" in message


# ------------------------------------------------------------------------------------------------ atomic


def make_atomic(directory: Path, name: str = "toy") -> Path:
    write(directory / f"{name}.inter",
          "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
          "u1\ti1\t5\t10\nu1\ti2\t3.5\t20\nu2\ti1\t1\t15\n")
    write(directory / f"{name}.user", "user_id:token\tage:float\tcity:token\tuser_name:token\n"
                                      "u1\t30\tParis\tAnn\nu2\t\tRome\tBob\n")
    write(directory / f"{name}.item",
          "item_id:token\tmovie_title:token_seq\ttags:token_seq\tprice:float\tvec:float_seq\n"
          "i1\tToy Story\ta b\t9.5\t1 2\ni2\tHeat\t\t3\t3 4\n")
    return directory


def test_atomic_round_trip(tmp_path):
    raw = read_atomic(make_atomic(tmp_path), "toy")
    assert raw.name == "toy"
    inter = raw.interactions
    assert list(inter["user"]) == ["u1", "u1", "u2"] and list(inter["item"]) == ["i1", "i2", "i1"]
    assert inter["rating"].tolist() == [5.0, 3.5, 1.0] and inter["timestamp"].tolist() == [10.0, 20.0, 15.0]
    assert raw.user_feature_kinds == {"age": "numeric", "city": "categorical"}  # user_name: free text
    assert raw.user_features["age"].iloc[0] == 30.0 and np.isnan(raw.user_features["age"].iloc[1])
    assert raw.item_feature_kinds == {"tags": "multi", "price": "numeric"}  # no title, no float_seq
    assert [list(tags) for tags in raw.item_features["tags"]] == [["a", "b"], []]


def test_atomic_without_timestamp_uses_row_order_and_dispatcher(tmp_path):
    write(tmp_path / "t.inter", "user_id:token\titem_id:token\n1\t2\n1\t3\n\n2\t2\n")
    raw = read_dataset({"format": "atomic", "path": str(tmp_path / "t.inter")})
    assert raw.name == "t" and raw.interactions["timestamp"].tolist() == [0.0, 1.0, 2.0]
    assert raw.user_features is None and "rating" not in raw.interactions


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("user_id:token\titem_id:token\trating:float\n1\t2\t3\n1\t2\n",
         "toy.inter, line 3: expected 3 fields separated by '\\t', found 2"),
        ("user_id:token\titem_id:token\trating:float\n1\t2\t3\n\n1\t2\t3\t4\n",
         "toy.inter, line 4: expected 3 fields separated by '\\t', found 4"),
        ("user_id:token\titem_id:token\trating:float\n1\t2\t3\n1\t2\tgood\n",
         "toy.inter, line 3, column 'rating': expected a number, found 'good'"),
        ("user_id:token\titem_id:token\trating:float\r\n1\t2\t3\r\n\r\n1\t2\t\r\n",
         "toy.inter, line 4, column 'rating': expected a number, found an empty value"),
        ("user_id:token\titem_id:token\ttimestamp:float\n1\t2\tyesterday\n",
         "toy.inter, line 2, column 'timestamp': expected a number"),
        ("user_id:token\titem:token\n1\t2\n", "toy.inter, line 1: missing column 'item_id'"),
        ("user_id:token\titem_id:integer\n1\t2\n",
         "toy.inter, line 1, column 2 ('item_id:integer'): expected a typed header"),
        ("user_id:token\titem_id:token\n1\t\n",
         "toy.inter, line 2, column 'item_id': expected an id, found an empty value"),
    ],
)
def test_atomic_bad_input(tmp_path, text, expected):
    write(tmp_path / "toy.inter", text)
    assert expected in error_of(read_atomic, tmp_path, "toy")


def test_atomic_missing_files(tmp_path):
    assert "directory not found" in error_of(read_atomic, tmp_path / "nope", "toy")
    write(tmp_path / "other.inter", "user_id:token\titem_id:token\n")
    message = error_of(read_atomic, tmp_path, "toy")
    assert "toy.inter: file not found" in message and "other.inter" in message


# ------------------------------------------------------------------------------------------------ raw MovieLens


def make_ml100k_dir(directory: Path) -> Path:
    write(directory / "u.data", "196\t242\t3\t881250949\n186\t302\t3\t891717742\n196\t302\t4\t881250950\n")
    write(directory / "u.user", "196|49|M|writer|55105\n186|39|F|executive|00000\n")
    flags_242 = ["0"] * 19
    flags_242[5] = "1"
    flags_302 = ["0"] * 19
    flags_302[6], flags_302[10] = "1", "1"
    write(directory / "u.item",
          "242|Kolya (1996)|24-Jan-1997||http://x|" + "|".join(flags_242) + "\n"
          "302|L.A. Confidential (1997)|01-Jan-1997||http://y|" + "|".join(flags_302) + "\n"
          "303|Café (1997)|||http://z|" + "|".join(["0"] * 19) + "\n", encoding="latin-1")
    return directory


def test_movielens_u_data_file_and_directory(tmp_path):
    make_ml100k_dir(tmp_path)
    only = read_movielens(tmp_path / "u.data")
    assert len(only.interactions) == 3 and only.user_features is None
    assert only.interactions["user"].tolist() == ["196", "186", "196"]
    raw = read_dataset({"format": "movielens", "path": str(tmp_path), "name": "small"})
    assert raw.name == "small"
    assert raw.interactions["rating"].tolist() == [3.0, 3.0, 4.0]
    assert raw.interactions["timestamp"].tolist()[0] == 881250949.0
    assert raw.user_feature_kinds == {"age": "categorical", "gender": "categorical", "occupation": "categorical"}
    items = raw.item_features.set_index("item")
    assert list(items.loc["242", "genre"]) == ["Comedy"]
    assert list(items.loc["302", "genre"]) == ["Crime", "Film-Noir"]
    assert list(items.loc["303", "genre"]) == [] and pd.isna(items.loc["303", "release_year"])
    assert items.loc["242", "release_year"] == "1997"


def test_movielens_dat_directory(tmp_path):
    write(tmp_path / "ratings.dat", "1::1193::5::978300760\n1::661::3::978302109\n2::1193::4::978298413\n")
    write(tmp_path / "users.dat", "1::F::1::10::48067\n2::M::56::16::70072\n")
    write(tmp_path / "movies.dat", "1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n"
                                   "661::James and the Giant Peach (1996)::Animation|Children's|Musical\n",
          encoding="latin-1")
    raw = read_movielens(tmp_path)
    assert raw.interactions["item"].tolist() == ["1193", "661", "1193"]
    assert raw.interactions["timestamp"].tolist() == [978300760.0, 978302109.0, 978298413.0]
    assert raw.user_features.set_index("user").loc["2", "age"] == "56"
    items = raw.item_features.set_index("item")
    assert list(items.loc["661", "genre"]) == ["Animation", "Children's", "Musical"]
    assert items.loc["1193", "release_year"] == "1975"
    write(tmp_path / "ratings.dat", "1::1193::5::978300760\n1::661::3\n")
    assert "ratings.dat, line 2: expected 4 fields separated by '::', found 3" in error_of(read_movielens, tmp_path)


def test_movielens_latest_csv(tmp_path):
    write(tmp_path / "ratings.csv", "userId,movieId,rating,timestamp\n1,1,4.0,964982703\n1,3,4.0,964981247\n")
    write(tmp_path / "movies.csv", 'movieId,title,genres\n1,Toy Story (1995),Adventure|Animation\n'
                                   '3,"Grumpier Old Men, The (1995)",(no genres listed)\n')
    raw = read_movielens(tmp_path)
    assert raw.interactions["item"].tolist() == ["1", "3"]
    items = raw.item_features.set_index("item")
    assert list(items.loc["1", "genre"]) == ["Adventure", "Animation"] and list(items.loc["3", "genre"]) == []
    assert items.loc["3", "release_year"] == "1995"


def test_movielens_bad_input(tmp_path):
    assert "no MovieLens ratings file found" in error_of(read_movielens, tmp_path)
    make_ml100k_dir(tmp_path)
    write(tmp_path / "u.data", "196\t242\t3\t881250949\n186\t302\tthree\t891717742\n")
    assert "u.data, line 2, column 'rating': expected a number, found 'three'" in error_of(read_movielens, tmp_path)
    write(tmp_path / "u.data", "196\t242\t3\t881250949\n")
    write(tmp_path / "u.item", "242|Kolya (1996)|24-Jan-1997||http://x|" + "|".join(["0"] * 18 + ["2"]) + "\n")
    assert "u.item, line 1, field 24 (genre 'Western'): expected a 0/1 flag" in error_of(read_movielens, tmp_path)
    write(tmp_path / "u.item", "242|Kolya (1996)|24-Jan-1997\n")
    assert "u.item, line 1: expected 24 fields separated by '|', found 3" in error_of(read_movielens, tmp_path)


# ------------------------------------------------------------------------------------------------ tables

MAPPING = {"user": "uid", "item": "iid", "timestamp": "ts", "rating": "stars"}


def test_csv_and_tsv_with_column_mapping(tmp_path):
    write(tmp_path / "log.csv", 'uid,iid,ts,stars,comment\n1,a,100,4,"fine, really"\n2,b,50,5,"multi\nline"\n'
                                '1,b,120,3,x\n')
    raw = read_table(tmp_path / "log.csv", MAPPING)
    assert raw.name == "log"
    assert raw.interactions["user"].tolist() == ["1", "2", "1"]
    assert raw.interactions["timestamp"].tolist() == [100.0, 50.0, 120.0]
    assert raw.interactions["rating"].tolist() == [4.0, 5.0, 3.0]
    write(tmp_path / "log.txt", "uid;iid\n1;a\n2;b\n")
    raw = read_dataset({"format": "table", "path": str(tmp_path / "log.txt"), "sep": ";",
                        "columns": {"user": "uid", "item": "iid"}})
    assert raw.interactions["timestamp"].tolist() == [0.0, 1.0] and "rating" not in raw.interactions
    write(tmp_path / "log.tsv", "uid\tiid\tts\n1\ta\t2024-01-01 00:00:10\n2\tb\t2024-01-01T00:00:00Z\n")
    raw = read_table(tmp_path / "log.tsv", {"user": "uid", "item": "iid", "timestamp": "ts"})
    assert raw.interactions["timestamp"].tolist() == [1704067210.0, 1704067200.0]


def test_parquet_with_column_mapping(tmp_path):
    frame = pd.DataFrame({"uid": [3, 1, 3], "iid": ["x", "y", "y"], "ts": pd.to_datetime([1, 2, 3], unit="s"),
                          "stars": [1.0, 2.0, 3.0]})
    frame.to_parquet(tmp_path / "log.parquet")
    raw = read_dataset({"format": "table", "path": str(tmp_path / "log.parquet"), "columns": MAPPING})
    assert raw.interactions["user"].tolist() == [3, 1, 3] and raw.interactions["item"].tolist() == ["x", "y", "y"]
    assert raw.interactions["timestamp"].tolist() == [1.0, 2.0, 3.0]
    frame.assign(stars=[1.0, None, 2.0]).to_parquet(tmp_path / "holes.parquet")
    message = error_of(read_table, tmp_path / "holes.parquet", MAPPING)
    assert "holes.parquet, row 2, column 'stars': expected a number, found a missing value" in message
    message = error_of(read_table, tmp_path / "log.parquet", {"user": "user_id", "item": "iid"})
    assert "log.parquet: missing column 'user_id'" in message and "'uid'" in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("uid,iid,ts,stars\n1,a,1,2\n1,b\n", "log.csv, line 3: expected 4 fields separated by ',', found 2"),
        ('uid,iid,ts,stars\n1,"a,b",1,2\n1,b,1,2,5\n', "log.csv, line 3: expected 4 fields separated by ',', found 5"),
        ('uid,iid,ts,stars\n1,"a\nb",1,2\n1,b,1,x\n', "log.csv, line 4, column 'stars': expected a number, found 'x'"),
        ("uid,iid,ts,stars\n1,a,1,2\n\n1,b,now,2\n", "log.csv, line 4, column 'ts': expected a number"),
        ("uid,iid,ts\n1,a,1\n", "log.csv, line 1: missing column 'stars' (found: 'uid', 'iid', 'ts')"),
        ("uid\tiid\tts\tstars\n1\ta\t1\t2\n", "is the separator ',' right? (set data.sep)"),
        ("uid,iid,ts,stars\n,a,1,2\n", "log.csv, line 2, column 'uid': expected an id, found an empty value"),
    ],
)
def test_table_bad_input(tmp_path, text, expected):
    write(tmp_path / "log.csv", text)
    assert expected in error_of(read_table, tmp_path / "log.csv", MAPPING)


def test_table_missing_file_and_unknown_extension(tmp_path):
    assert "nope.csv: file not found" in error_of(read_table, tmp_path / "nope.csv", MAPPING)
    write(tmp_path / "log.txt", "uid iid\n")
    assert "set data.sep" in error_of(read_table, tmp_path / "log.txt", MAPPING)


# ------------------------------------------------------------------------------------------------ dispatcher


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"format": "netflix"}, "data.format: unknown format 'netflix'"),
        ({"format": "atomic"}, "data.path: required when data.format is 'atomic'"),
        ({"format": "table", "path": "x.csv"}, "data.columns: required"),
        ({"format": "table", "path": "x.csv", "columns": {"user": "u"}}, "data.columns.item: required"),
        ({"format": "table", "path": "x.csv", "columns": {"user": "u", "item": "i", "when": "t"}}, "data.columns.when"),
        ({"format": "movielens", "path": "x", "sep": ","}, "data.sep: only used with data.format 'table'"),
        ({"format": "atomic", "path": "x", "columns": {"user": "u"}}, "data.columns: only used"),
        ({"format": "gowalla-mat", "path": "/nonexistent/g.mat"}, "g.mat: file not found"),
        ("ml-100k", "data: expected a mapping"),
    ],
)
def test_dispatcher_errors_name_the_key(spec, expected):
    assert expected in error_of(read_dataset, spec)


# ------------------------------------------------------------------------------------------------ Gowalla .mat


def test_gowalla_mat_synthetic(tmp_path):
    scipy_io = pytest.importorskip("scipy.io")
    import scipy.sparse

    dense = np.array([[0, 1, 1, 0], [1, 0, 0, 0], [0, 0, 0, 0], [0, 1, 0, 1]], dtype=np.float64)
    scipy_io.savemat(tmp_path / "g.mat", {"data": scipy.sparse.csc_matrix(dense)})
    raw = read_dataset({"format": "gowalla-mat", "path": str(tmp_path / "g.mat")})
    inter = raw.interactions
    assert raw.name == "g" and "rating" not in inter
    assert list(zip(inter["user"], inter["item"])) == [(0, 1), (0, 2), (1, 0), (3, 1), (3, 3)]
    assert (inter["timestamp"] == 0.0).all()
    scipy_io.savemat(tmp_path / "w.mat", {"counts": dense * 2})
    assert "no variable 'data' (found: 'counts')" in error_of(read_gowalla_mat, tmp_path / "w.mat")
    assert read_gowalla_mat(tmp_path / "w.mat", key="counts").interactions["rating"].tolist() == [2.0] * 5
    write(tmp_path / "bad.mat", "not a mat file")
    assert "bad.mat: cannot read as a MATLAB .mat file" in error_of(read_gowalla_mat, tmp_path / "bad.mat")


@pytest.mark.skipif(not GOWALLA.exists(), reason="Gowalla data not present")
def test_gowalla_real_file():
    inter = read_gowalla_mat(GOWALLA).interactions
    assert len(inter) == 1_027_464
    assert inter["user"].nunique() == 29_858 and inter["item"].nunique() == 40_988
    assert not inter.duplicated(["user", "item"]).any()


def test_table_with_byte_order_mark_and_crlf(tmp_path):
    write(tmp_path / "bom.csv", "\ufeffuid,iid,stars\r\n1,a,2\r\n2,b,x\r\n")
    message = error_of(read_table, tmp_path / "bom.csv", {"user": "uid", "item": "iid", "rating": "stars"})
    assert "bom.csv, line 3, column 'stars': expected a number, found 'x'" in message
    write(tmp_path / "bom.csv", "\ufeffuid,iid,stars\r\n1,a,2\r\n2,b,4\r\n")
    raw = read_table(tmp_path / "bom.csv", {"user": "uid", "item": "iid", "rating": "stars"})
    assert raw.interactions["rating"].tolist() == [2.0, 4.0]
