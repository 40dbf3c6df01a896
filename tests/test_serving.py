"""Serving: FAISS retrieval with exclusion, the retrieve-then-rank pipeline against a direct computation with the
scheme, the HTTP service and the `recommend` command, on one tiny trained run."""
import json
import urllib.error
import urllib.request

import numpy as np
import pytest
import torch

from tandem.cli import main
from tandem.data.splits import histories as history_windows
from tandem.data.synthetic import markov_interactions
from tandem.errors import TandemError
from tandem.serving import ExcludeCSR, ItemIndex, Recommender
from tandem.serving.http import start_server


# ---------------------------------------------------------------------------------------------- the index


def reference_top_k(queries, vectors, k, exclude):
    """Exact top-k by inner product with padding and each row's excluded items masked (numpy)."""
    scores = queries.astype(np.float64) @ vectors.astype(np.float64).T
    scores[:, 0] = -np.inf
    for row, items in enumerate(exclude):
        scores[row, np.asarray(items, dtype=np.int64)] = -np.inf
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(scores, order, axis=1)


@pytest.fixture(scope="module")
def vectors():
    rng = np.random.default_rng(0)
    return rng.normal(size=(301, 8)).astype(np.float32), rng.normal(size=(16, 8)).astype(np.float32)


def random_exclusions(rows, num_items, seed=1):
    rng = np.random.default_rng(seed)
    return [rng.choice(np.arange(1, num_items + 1), size=int(rng.integers(0, 40)), replace=False) for _ in range(rows)]


def test_flat_search_with_exclusion_equals_exact_reference(vectors):
    items_table, queries = vectors
    exclude = random_exclusions(len(queries), 300)
    index = ItemIndex(items_table)
    items, scores = index.search(queries, 25, exclude)
    expected_items, expected_scores = reference_top_k(queries, items_table, 25, exclude)
    np.testing.assert_array_equal(items, expected_items)
    np.testing.assert_allclose(scores, expected_scores, rtol=1e-5, atol=1e-5)
    assert (items > 0).all() and not any(np.isin(items[r], exclude[r]).any() for r in range(len(queries)))
    # the same exclusions given as a CSR
    indptr = np.concatenate([[0], np.cumsum([len(e) for e in exclude])])
    csr_items, _ = index.search(queries, 25, ExcludeCSR(indptr, np.concatenate(exclude)))
    np.testing.assert_array_equal(csr_items, items)


def test_rows_with_too_few_items_are_padded():
    table = np.random.default_rng(2).normal(size=(6, 4)).astype(np.float32)  # 5 items
    index = ItemIndex(table)
    items, scores = index.search(table[[1, 2]], 4, [[1, 2, 3], []])
    assert sorted(items[0][:2]) == [4, 5] and (items[0][2:] == 0).all() and np.isneginf(scores[0][2:]).all()
    assert sorted(items[1]) != [0] and (items[1] > 0).all() and np.isfinite(scores[1]).all()
    items, scores = index.search(table[[1]], 8)
    assert sorted(items[0][:5]) == [1, 2, 3, 4, 5] and (items[0][5:] == 0).all()


def test_ivf_with_all_cells_probed_equals_exact(vectors, tmp_path):
    items_table, queries = vectors
    exclude = random_exclusions(len(queries), 300, seed=3)
    ivf = ItemIndex(items_table, exact=False)
    assert ivf.nlist == round(4 * np.sqrt(300)) and 1 <= ivf.nprobe < ivf.nlist
    few = ivf.search(queries, 60, exclude)[0]  # default nprobe: short rows are searched again with more cells
    assert (few > 0).all() and all(len(set(row)) == 60 for row in few)
    ivf.nprobe = ivf.nlist
    exact_items, exact_scores = ItemIndex(items_table).search(queries, 20, exclude)
    items, scores = ivf.search(queries, 20, exclude)
    np.testing.assert_array_equal(items, exact_items)
    np.testing.assert_allclose(scores, exact_scores, rtol=1e-5, atol=1e-5)
    ivf.save(tmp_path / "items.faiss")
    loaded = ItemIndex.load(tmp_path / "items.faiss")
    loaded.nprobe = loaded.nlist
    np.testing.assert_array_equal(loaded.search(queries, 20, exclude)[0], exact_items)


# ---------------------------------------------------------------------------------------------- a tiny run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("serving")
    frame = markov_interactions(40, 60, per_user=12, seed=3).interactions
    frame = frame.rename(columns={"user": "uid", "item": "iid", "timestamp": "ts"})
    frame["uid"] = "u" + frame["uid"].astype(str)
    frame["iid"] = "i" + frame["iid"].astype(str)
    frame.to_csv(root / "tiny.csv", index=False)
    config = root / "tiny.yaml"
    config.write_text(
        f"""task: sequential
data:
  format: table
  path: {root / 'tiny.csv'}
  columns: {{user: uid, item: iid, timestamp: ts}}
  min_user_interactions: 5
  min_item_interactions: 2
  max_seq_len: 5
retriever: {{name: sasrec, embedding_dim: 16, dropout: 0.1}}
ranker: {{name: din, embedding_dim: 16, attention_hidden: 16, mlp_hidden: [16], dropout: 0.1}}
sampler: {{name: uniform}}
scheme: {{name: corr}}
train: {{epochs: 1, batch_size: 64, num_negatives: 5, progress: false}}
eval: {{cutoffs: [5, 10], retrieval_cutoff: 15, monitor: ndcg@10}}
"""
    )
    out = root / "run"
    assert main(["train", str(config), "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def recommender(run_dir):
    return Recommender.from_run(run_dir)


def direct_two_stage(recommender, user_tokens, k):
    """What the two-stage evaluation does for these users, computed with the scheme alone: the retriever's exact
    scores over all items, the user's items masked, top `retrieval_cutoff`, stable re-sort by `rerank_scores`."""
    data, scheme = recommender.data, recommender.scheme
    users = np.array([list(map(str, data.user_tokens)).index(token) for token in user_tokens])
    starts, ends = data.indptr[users], data.indptr[users + 1]
    batch = {
        "user": torch.from_numpy(users),
        "history": torch.from_numpy(history_windows(data.items, starts, ends, recommender.max_seq_len)),
    }
    with torch.no_grad():
        scores = scheme.retriever.score_all(batch).float()
        for row in range(len(users)):
            scores[row, torch.from_numpy(data.items[starts[row]:ends[row]])] = float("-inf")
        scores[:, 0] = float("-inf")
        candidates = torch.argsort(scores, dim=1, descending=True, stable=True)[:, :recommender.retrieval_cutoff]
        rerank = scheme.rerank_scores(batch, candidates).float()
        final = torch.argsort(rerank, dim=1, descending=True, stable=True)[:, :k]
    items = candidates.gather(1, final).numpy()
    return [[str(data.item_tokens[item]) for item in row] for row in items], rerank.gather(1, final).numpy()


def test_recommendations_equal_the_two_stage_order(recommender):
    data = recommender.data
    assert recommender.cooperative and recommender.retrieval_cutoff == 15
    users = [str(token) for token in data.user_tokens[:12]]
    got = recommender.recommend(users=users, k=8)
    expected_items, expected_scores = direct_two_stage(recommender, users, 8)
    assert [[entry["item"] for entry in row] for row in got] == expected_items
    np.testing.assert_allclose([[entry["score"] for entry in row] for row in got], expected_scores, rtol=1e-4, atol=1e-5)
    for user, row in zip(users, got):  # known items are never recommended
        u = list(map(str, data.user_tokens)).index(user)
        known = {str(data.item_tokens[i]) for i in data.items[data.indptr[u]:data.indptr[u + 1]]}
        assert known.isdisjoint(entry["item"] for entry in row)
        assert all(np.isfinite(entry["retriever_score"]) for entry in row)
    # one user alone gives the same answer as inside a batch; an explicit history equal to the user's own
    # sequence gives the same ranking as the user
    alone = recommender.recommend(users=[users[3]], k=8)[0]  # scores equal up to batched float arithmetic
    assert [entry["item"] for entry in alone] == [entry["item"] for entry in got[3]]
    np.testing.assert_allclose([e["score"] for e in alone], [e["score"] for e in got[3]], rtol=1e-5, atol=1e-6)
    u = list(map(str, data.user_tokens)).index(users[3])
    sequence = [str(data.item_tokens[i]) for i in data.items[data.indptr[u]:data.indptr[u + 1]]]
    anonymous = recommender.recommend(histories=[sequence], k=8)
    assert [entry["item"] for entry in anonymous[0]] == [entry["item"] for entry in got[3]]
    # k above the cutoff widens the candidate set; including known items may return them
    assert len(recommender.recommend(users=users[:1], k=30)[0]) == 30
    assert len(recommender.recommend(users=users[:1], k=5, exclude_known=False)[0]) == 5


def test_unknown_tokens_and_bad_arguments_are_tandem_errors(recommender):
    with pytest.raises(TandemError, match="nobody"):
        recommender.recommend(users=["nobody", "u0"])
    with pytest.raises(TandemError, match="no-such-item"):
        recommender.recommend(histories=[["no-such-item"]])
    with pytest.raises(TandemError, match="users or histories"):
        recommender.recommend()
    with pytest.raises(TandemError, match="k must be"):
        recommender.recommend(users=[str(recommender.data.user_tokens[0])], k=0)


def post(url, body):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_http_service(recommender):
    server, thread = start_server(recommender, port=0)
    try:
        with urllib.request.urlopen(server.url + "/health", timeout=10) as response:
            health = json.loads(response.read())
        assert response.status == 200 and health["status"] == "ok" and health["items"] == recommender.num_items
        user = str(recommender.data.user_tokens[0])
        status, body = post(server.url + "/recommend", {"user": user, "k": 4})
        assert status == 200 and body["recommendations"] == recommender.recommend(users=[user], k=4)[0]
        status, body = post(server.url + "/recommend", {"users": [user, str(recommender.data.user_tokens[1])], "k": 3})
        assert status == 200 and len(body["recommendations"]) == 2 and len(body["recommendations"][1]) == 3
        history = [str(recommender.data.item_tokens[i]) for i in (1, 2, 3)]
        status, body = post(server.url + "/recommend", {"history": history, "k": 3})
        assert status == 200 and len(body["recommendations"]) == 3
        for bad, message in [(b"{not json", "JSON"), ({"user": "nobody"}, "nobody"), ({"k": 3}, "user"),
                             ({"user": user, "k": -1}, "k"), ({"user": user, "color": 1}, "color")]:
            status, body = post(server.url + "/recommend", bad)
            assert status == 400 and message in body["error"]
        status, _ = post(server.url + "/nowhere", {})
        assert status == 404
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_cli_recommend(run_dir, recommender, capsys):
    user = str(recommender.data.user_tokens[0])
    assert main(["recommend", str(run_dir), "--user", user, "--k", "3"]) == 0
    out = capsys.readouterr().out
    expected = recommender.recommend(users=[user], k=3)[0]
    assert f"user {user}" in out and all(entry["item"] in out for entry in expected)
    assert main(["recommend", str(run_dir), "--user", user, "--k", "3", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert [entry["item"] for entry in payload["recommendations"]] == [entry["item"] for entry in expected]
    assert main(["recommend", str(run_dir), "--user", "nobody"]) == 2
    err = capsys.readouterr().err
    assert "nobody" in err and "Traceback" not in err
    assert main(["recommend", str(run_dir)]) == 2


def test_general_task_retriever_only_run(tmp_path):
    """A retriever-only general-task run: recommendations are the retriever's exact top-k, known items excluded."""
    frame = markov_interactions(30, 40, per_user=10, seed=5).interactions
    frame.to_csv(tmp_path / "general.csv", index=False)
    config = tmp_path / "general.yaml"
    config.write_text(
        f"""task: general
data: {{format: table, path: {tmp_path / 'general.csv'}, columns: {{user: user, item: item, timestamp: timestamp}},
       min_user_interactions: 3, min_item_interactions: 2}}
retriever: {{name: mf, embedding_dim: 8}}
train: {{epochs: 1, batch_size: 64, num_negatives: 5, progress: false}}
eval: {{cutoffs: [5], monitor: ndcg@5}}
"""
    )
    assert main(["train", str(config), "--out", str(tmp_path / "run")]) == 0
    recommender = Recommender.from_run(tmp_path / "run", exact=False)
    recommender.index.nprobe = recommender.index.nlist
    data, retriever = recommender.data, recommender.scheme.retriever
    assert not recommender.cooperative
    users = np.arange(5)
    got = recommender.recommend(users=[str(data.user_tokens[u]) for u in users], k=6)
    with torch.no_grad():
        scores = retriever.score_all({"user": torch.from_numpy(users)}).numpy()
    for row, u in enumerate(users):
        scores[row, 0] = -np.inf
        scores[row, data.items[data.indptr[u]:data.indptr[u + 1]]] = -np.inf
        expected = [str(data.item_tokens[i]) for i in np.argsort(-scores[row], kind="stable")[:6]]
        assert [entry["item"] for entry in got[row]] == expected
        assert all(entry["score"] == entry["retriever_score"] for entry in got[row])
    with pytest.raises(TandemError, match="general"):
        recommender.recommend(histories=[[str(data.item_tokens[1])]])
