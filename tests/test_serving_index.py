"""FAISS indexes chosen by factory string: recall against exact search, search knobs, one-line errors."""
import numpy as np
import pytest

from tandem.errors import TandemError
from tandem.serving.index import ItemIndex, recall_at_k, recommended_factory


def naive_recall(found, exact):
    """Per row: shared non-padding ids over the exact row's non-padding ids, with Python sets; mean over rows."""
    values = []
    for got, truth in zip(found.tolist(), exact.tolist()):
        truth_set = {item for item in truth if item > 0}
        if truth_set:
            values.append(len(truth_set & {item for item in got if item > 0}) / len(truth_set))
    return sum(values) / len(values)


def test_recall_on_hand_made_lists():
    found = np.array([[1, 2, 3], [4, 5, 6], [7, 7, 0]])
    exact = np.array([[1, 2, 9], [7, 8, 9], [7, 8, 0]])
    # row 0: 2 of 3; row 1: 0 of 3; row 2: item 7 found (twice, counted once) of {7, 8}
    assert recall_at_k(found, exact) == pytest.approx((2 / 3 + 0 + 1 / 2) / 3)
    assert recall_at_k(exact, exact) == 1.0
    assert recall_at_k(np.array([[0, 0]]), np.array([[3, 0]])) == 0.0


@pytest.fixture(scope="module")
def table():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(12, 8))
    vectors = centres[rng.integers(0, 12, 600)] + 0.3 * rng.normal(size=(600, 8))
    vectors = np.vstack([np.zeros((1, 8)), vectors]).astype(np.float32)  # row 0 is padding
    queries = (centres[rng.integers(0, 12, 40)] + 0.3 * rng.normal(size=(40, 8))).astype(np.float32)
    scores = queries.astype(np.float64) @ vectors[1:].astype(np.float64).T
    exact = np.argsort(-scores, axis=1, kind="stable")[:, :20] + 1  # numpy reference, ids 1..N
    return vectors, queries, exact


def test_exact_settings_of_approximate_indexes_find_the_exact_top_k(table):
    vectors, queries, exact = table
    for factory, options in (("Flat", {}), ("IVF16,Flat", {"nprobe": 16})):
        found, _ = ItemIndex(vectors, factory=factory, **options).search(queries, 20)
        assert recall_at_k(found, exact) == 1.0, factory
    # an HNSW graph under inner product is not exhaustive even searched wide; it misses little
    narrow, wide = (ItemIndex(vectors, factory="HNSW16", ef_search=ef).search(queries, 20)[0] for ef in (20, 400))
    assert recall_at_k(narrow, exact) <= recall_at_k(wide, exact) and recall_at_k(wide, exact) >= 0.98


def test_recall_of_a_coarse_search_matches_a_naive_count(table):
    vectors, queries, exact = table
    index = ItemIndex(vectors, factory="IVF32,Flat", nprobe=1)
    assert index.describe()["nprobe"] == 1 and index.describe()["nlist"] == 32
    found, _ = index.search(queries, 20)
    value = recall_at_k(found, exact)
    assert value == pytest.approx(naive_recall(found, exact))
    assert 0.0 < value < 1.0  # one cell of 32 misses some neighbours
    index.nprobe = 8
    assert recall_at_k(index.search(queries, 20)[0], exact) >= value


@pytest.mark.parametrize("factory, message", [
    ("IVF", "is not a FAISS factory string"),
    ("HNSWx", "is not a FAISS factory string"),
    ("", "must be a FAISS factory string"),
    ("IVF5000,Flat", "5000 IVF cells for 600 items"),
])
def test_a_bad_factory_is_one_clear_error(table, factory, message):
    with pytest.raises(TandemError) as error:
        ItemIndex(table[0], factory=factory)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_knobs_only_where_they_apply(table):
    with pytest.raises(TandemError, match="ef_search applies to an HNSW index"):
        ItemIndex(table[0], factory="IVF8,Flat", ef_search=32)
    with pytest.raises(TandemError, match="nprobe applies to an IVF index"):
        ItemIndex(table[0], factory="HNSW16", nprobe=4)


def test_recommended_factory_by_size():
    assert recommended_factory(50_000) == "Flat"
    assert recommended_factory(1_000_000) == "IVF4096,Flat"
    assert recommended_factory(50_000_000) == "IVF65536_HNSW32,Flat"


def test_factory_ivf_gets_a_useful_default_nprobe(table):
    index = ItemIndex(table[0], factory="IVF32,Flat")
    assert index.nprobe == 8  # FAISS's default would be 1
