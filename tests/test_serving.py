"""Serving: FAISS retrieval with exclusion, the retrieve-then-rank pipeline against a direct computation with the
scheme, the HTTP service and the `recommend` command, on one tiny trained run."""
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx
import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from tandem.cli import main
from tandem.data.splits import histories as history_windows
from tandem.data.synthetic import markov_interactions
from tandem.errors import TandemError
from tandem.serving import ExcludeCSR, ItemIndex, Recommender
from tandem.serving.http import ServeSettings, create_app, start_server


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


# ---------------------------------------------------------------------------------------------- the HTTP service


@pytest.fixture(scope="module")
def client(recommender):
    with TestClient(create_app(recommender, ServeSettings(threads=None, max_k=50, max_users=4, max_history=30,
                                                          max_body_bytes=4096))) as test_client:
        yield test_client


def test_http_service_answers(client, recommender):
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["items"] == recommender.num_items
    assert health["limits"]["max_k"] == 50 and health["limits"]["max_users"] == 4
    user, other = (str(token) for token in recommender.data.user_tokens[:2])
    response = client.post("/recommend", json={"user": user, "k": 4})
    assert response.status_code == 200
    assert response.json()["recommendations"] == recommender.recommend(users=[user], k=4)[0]
    body = client.post("/recommend", json={"users": [user, other], "k": 3}).json()
    assert len(body["recommendations"]) == 2 and len(body["recommendations"][1]) == 3
    history = [str(recommender.data.item_tokens[i]) for i in (1, 2, 3)]
    body = client.post("/recommend", json={"history": history, "k": 3}).json()
    assert len(body["recommendations"]) == 3
    body = client.post("/recommend", json={"histories": [history, history[:1]], "k": 2}).json()
    assert [len(row) for row in body["recommendations"]] == [2, 2]
    schema = client.get("/openapi.json").json()
    assert {"/health", "/recommend"} <= set(schema["paths"])
    assert "RecommendRequest" in schema["components"]["schemas"]


JSON = {"Content-Type": "application/json"}
BAD_REQUESTS = [  # (body, headers, status, words in the error)
    (b"{not json", JSON, 400, "not valid JSON"),
    (b"\xff\xfe", JSON, 400, "not valid JSON"),
    (b"[1, 2]", JSON, 400, "JSON object"),
    (b"", JSON, 400, "JSON object"),
    (b'{"user": "nobody"}', JSON, 400, "nobody"),
    (b'{"history": ["no-such-item"]}', JSON, 400, "no-such-item"),
    (b'{"k": 3}', JSON, 400, "give 'user'"),
    (b'{"user": "U", "k": 0}', JSON, 400, "'k'"),
    (b'{"user": "U", "k": -1}', JSON, 400, "'k'"),
    (b'{"user": "U", "k": "5"}', JSON, 400, "'k'"),
    (b'{"user": "U", "k": true}', JSON, 400, "'k'"),
    (b'{"user": "U", "k": 2.5}', JSON, 400, "'k'"),
    (b'{"user": "U", "k": 51}', JSON, 400, "at most 50"),
    (b'{"user": "U", "k": 50000000}', JSON, 400, "at most 50"),
    (b'{"users": ["U", "U", "U", "U", "U"]}', JSON, 400, "at most 4"),
    (b'{"history": [' + b", ".join([b'"1"'] * 31) + b"]}", JSON, 400, "at most 30"),
    (b'{"user": "U", "color": 1}', JSON, 400, "color"),
    (b'{"user": "U", "users": ["U"]}', JSON, 400, "either"),
    (b'{"users": "U"}', JSON, 400, "'users'"),
    (b'{"users": [1.5]}', JSON, 400, "users[0]"),
    (b'{"histories": [["1"], "2"]}', JSON, 400, "histories[1]"),
    (b'{"user": "U", "exclude_known": "no"}', JSON, 400, "exclude_known"),
    (b'{"user": "U"}', {}, 400, "Content-Type: application/json"),
    (b'{"user": "U"}', {"Content-Type": "text/plain"}, 400, "Content-Type: application/json"),
    (b'{"users": ["U"]' + b" " * 5000 + b"}", JSON, 413, "over 4096 bytes"),
]


@pytest.mark.parametrize("body, headers, status, message", BAD_REQUESTS)
def test_http_bad_requests_get_a_json_error(client, recommender, body, headers, status, message):
    body = body.replace(b'"U"', json.dumps(str(recommender.data.user_tokens[0])).encode())
    response = client.post("/recommend", content=body, headers=headers)
    assert response.status_code == status
    assert message in response.json()["error"] and "\n" not in response.json()["error"]


def test_http_wrong_path_and_method(client):
    assert client.get("/nowhere").status_code == 404 and "no such endpoint" in client.get("/nowhere").json()["error"]
    response = client.get("/recommend")
    assert response.status_code == 405 and "POST /recommend" in response.json()["error"]


def test_merged_queries_answer_as_alone(recommender):
    users = [str(token) for token in recommender.data.user_tokens[:6]]
    queries = [recommender.parse(users=users[:2], k=3), recommender.parse(users=users[2:3], k=7),
               recommender.parse(users=users[3:], k=5), recommender.parse(users=users[:1], k=3, exclude_known=False)]
    merged = recommender.run(queries)
    for query, (chunk, k, exclude) in zip(merged, [(users[:2], 3, True), (users[2:3], 7, True), (users[3:], 5, True),
                                                   (users[:1], 3, False)]):
        alone = recommender.recommend(users=chunk, k=k, exclude_known=exclude)
        assert [[e["item"] for e in row] for row in query] == [[e["item"] for e in row] for row in alone]
        np.testing.assert_allclose([[e["score"] for e in row] for row in query],
                                   [[e["score"] for e in row] for row in alone], rtol=1e-5, atol=1e-6)


class FakeQuery:
    def __init__(self, users, k):
        self.users, self.k, self.rows, self.key = users, k, len(users), ("users", k)


class SlowRecommender:
    """`parse` / `run` / `info` like a Recommender; the user "slow" takes `delay` seconds to answer."""

    num_items = 1

    def __init__(self, delay=1.0):
        self.delay, self.calls = delay, []

    def info(self):
        return {"items": 1}

    def parse(self, users=None, histories=None, k=10, exclude_known=True):
        if users is None:
            raise TandemError("give users")
        return FakeQuery(users, k)

    def run(self, queries):
        self.calls.append([user for query in queries for user in query.users])
        if any("slow" in query.users for query in queries):
            time.sleep(self.delay)
        return [[[{"item": user, "score": 1.0, "retriever_score": 1.0}] for user in query.users] for query in queries]


def test_a_slow_request_does_not_hold_up_the_others():
    """Two workers, no lock: a fast request sent while a slow one runs is answered at once."""
    fake = SlowRecommender(delay=1.5)
    app = create_app(fake, ServeSettings(threads=None, workers=2))

    async def scenario():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            slow = asyncio.create_task(http.post("/recommend", json={"user": "slow"}))
            await asyncio.sleep(0.2)
            began = time.perf_counter()
            fast = await http.post("/recommend", json={"user": "fast"})
            fast_seconds = time.perf_counter() - began
            return (await slow), fast, fast_seconds

    slow, fast, fast_seconds = asyncio.run(scenario())
    assert slow.status_code == fast.status_code == 200
    assert fast.json()["recommendations"] == [{"item": "fast", "score": 1.0, "retriever_score": 1.0}]
    assert fast_seconds < 1.0


def test_waiting_requests_are_merged_into_one_model_call():
    fake = SlowRecommender(delay=0.5)
    app = create_app(fake, ServeSettings(threads=None, workers=1, max_batch_rows=8))

    async def scenario():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            slow = asyncio.create_task(http.post("/recommend", json={"user": "slow"}))
            await asyncio.sleep(0.1)
            waiting = [http.post("/recommend", json={"user": f"u{i}"}) for i in range(5)]
            answered = await asyncio.gather(slow, *waiting)
            return answered, (await http.get("/health")).json()

    responses, health = asyncio.run(scenario())
    # the slow call sleeps 0.5 s: the busy time the load benchmark divides by wall time includes it
    assert (health["model_calls"], health["rows"]) == (2, 6) and 0.5 <= health["model_seconds"] < 5.0
    assert all(response.status_code == 200 for response in responses)
    assert [response.json()["recommendations"][0]["item"] for response in responses[1:]] == [f"u{i}" for i in range(5)]
    assert fake.calls == [["slow"], [f"u{i}" for i in range(5)]]


def test_timeout_gives_504():
    app = create_app(SlowRecommender(delay=1.0), ServeSettings(threads=None, timeout_s=0.2))
    with TestClient(app) as test_client:
        response = test_client.post("/recommend", json={"user": "slow"})
    assert response.status_code == 504 and "0.2 s" in response.json()["error"]


def test_graceful_shutdown_finishes_requests_in_flight():
    handle = start_server(SlowRecommender(delay=1.0), settings=ServeSettings(threads=None, graceful_s=5))
    result = {}
    request = threading.Thread(target=lambda: result.update(
        response=httpx.post(handle.url + "/recommend", json={"user": "slow"}, timeout=10)))
    request.start()
    time.sleep(0.3)
    handle.stop()
    request.join(10)
    assert result["response"].status_code == 200 and not handle.thread.is_alive()
    with pytest.raises(httpx.ConnectError):
        httpx.get(handle.url + "/health", timeout=2)


def test_tandem_serve_command(run_dir):
    """`tandem serve` in its own process: prints its URL, answers, and exits 0 on SIGTERM after a clean stop."""
    process = subprocess.Popen([sys.executable, "-m", "tandem.cli", "serve", str(run_dir), "--port", "0", "--quiet"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        line = process.stdout.readline()
        assert line.startswith("serving http://127.0.0.1:"), line + process.stderr.read()
        url = line.split()[1]
        assert httpx.get(url + "/health", timeout=10).json()["status"] == "ok"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
        assert "stopped on SIGTERM" in process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()


def test_serve_refuses_bad_options_with_one_line(run_dir, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        assert main(["serve", str(run_dir), "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert "cannot listen" in err and err.count("\n") == 1
    for bad in (["--timeout", "0"], ["--workers", "0"], ["--port", "70000"], ["--max-k", "-3"]):
        with pytest.raises(SystemExit) as stop:
            main(["serve", str(run_dir), *bad])
        assert stop.value.code == 2


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


def train_general_run(tmp_path, seed: int, models: str) -> None:
    """Train a one-epoch general-task run into tmp_path/run: small Markov data, then the `models` YAML lines."""
    frame = markov_interactions(30, 40, per_user=10, seed=seed).interactions
    frame.to_csv(tmp_path / "general.csv", index=False)
    config = tmp_path / "general.yaml"
    config.write_text(
        f"""task: general
data: {{format: table, path: {tmp_path / 'general.csv'}, columns: {{user: user, item: item, timestamp: timestamp}},
       min_user_interactions: 3, min_item_interactions: 2}}
train: {{epochs: 1, batch_size: 64, num_negatives: 5, progress: false}}
""" + models)
    assert main(["train", str(config), "--out", str(tmp_path / "run")]) == 0


def test_general_task_retriever_only_run(tmp_path):
    """A retriever-only general-task run: recommendations are the retriever's exact top-k, known items excluded."""
    train_general_run(tmp_path, 5, "retriever: {name: mf, embedding_dim: 8}\neval: {cutoffs: [5], monitor: ndcg@5}\n")
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


def test_ncf_run_is_served_by_its_full_score_over_the_retrieved_candidates(tmp_path):
    """NeuMF indexes its GMF part only: the service retrieves the top `retrieval_cutoff` items by GMF (known items
    excluded) and orders them by the full NeuMF score, each candidate scored on its own here."""
    train_general_run(tmp_path, 6, "retriever: {name: ncf, embedding_dim: 8, mlp_hidden: [8]}\n"
                                   "eval: {cutoffs: [5], monitor: ndcg@5, retrieval_cutoff: 12}\n")
    recommender = Recommender.from_run(tmp_path / "run")
    data, model = recommender.data, recommender.scheme.retriever
    assert recommender.rescores and recommender.info()["rescored_by"] == "full_score"
    users = [0, 3, 7]
    got = recommender.recommend(users=[str(data.user_tokens[u]) for u in users], k=5)
    for row, user in enumerate(users):
        known = set(data.items[data.indptr[user]:data.indptr[user + 1]].tolist())
        with torch.no_grad():
            gmf = {item: float(model.score({"user": torch.tensor([user])}, torch.tensor([item])))
                   for item in range(1, data.num_items + 1) if item not in known}
            retrieved = sorted(gmf, key=lambda item: (-gmf[item], item))[:12]
            full = {item: float(model.full_score({"user": torch.tensor([user])}, torch.tensor([[item]])))
                    for item in retrieved}
        expected = sorted(retrieved, key=lambda item: -full[item])[:5]
        assert [entry["item"] for entry in got[row]] == [str(data.item_tokens[item]) for item in expected]
        for entry, item in zip(got[row], expected):
            assert entry["score"] == pytest.approx(full[item], abs=1e-5)
            assert entry["retriever_score"] == pytest.approx(gmf[item], abs=1e-5)


def test_cli_index_factory(run_dir, recommender, capsys):
    user = str(recommender.data.user_tokens[0])
    expected = [entry["item"] for entry in recommender.recommend(users=[user], k=3)[0]]
    # an HNSW graph searched wide on a tiny catalogue finds the exact candidates: same recommendations
    assert main(["recommend", str(run_dir), "--user", user, "--k", "3", "--json", "--index", "HNSW8",
                 "--ef-search", "200"]) == 0
    assert [entry["item"] for entry in json.loads(capsys.readouterr().out)["recommendations"]] == expected
    for bad, message in ((["--index", "IVFx,Flat"], "not a FAISS factory string"),
                         (["--index", "Flat", "--approximate"], "leave out --approximate"),
                         (["--ef-search", "8"], "add --index"),
                         (["--index", "Flat", "--nprobe", "2"], "nprobe applies to an IVF index")):
        assert main(["recommend", str(run_dir), "--user", user, *bad]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err


def test_startup_moves_the_loaded_model_out_of_garbage_collection():
    """Collections that walk the model's long-lived objects stalled about 1 % of answers by 100+ ms under load;
    the server freezes what exists at startup (gc.freeze), so later collections skip it."""
    import gc

    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    try:
        with TestClient(create_app(SlowRecommender(delay=0.0), ServeSettings(threads=None))):
            assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
