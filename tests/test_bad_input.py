"""Every bad input a user can give stops with one line on stderr naming the problem, exit status 2, no traceback,
and nothing half-written (issue 12). One table, one row per input; then the file readers on arbitrary bytes
(hypothesis): they return data or raise TandemError, nothing else."""
from __future__ import annotations

import errno
import gzip
import json
import math
import os
import shutil
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tandem.cli import main
from tandem.config import load_config
from tandem.data.dataset import preprocess
from tandem.data.readers import read_atomic, read_movielens, read_table
from tandem.data.synthetic import markov_interactions
from tandem.errors import TandemError

from test_cli import tiny_yaml

def base_yaml(csv):
    return tiny_yaml(csv, epochs=1)

GENERAL = ["--set", "task=general", "--set", "retriever={name: mf, embedding_dim: 8}"]
RANKER = ["--set", "ranker={name: din, embedding_dim: 8}", "--set", "scheme={name: independent}"]


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    """40 users x 60 items, 12 interactions each, with string ids."""
    data = markov_interactions(40, 60, per_user=12, seed=3).interactions
    return pd.DataFrame({"uid": "u" + data["user"].astype(str), "iid": "i" + data["item"].astype(str),
                         "ts": data["timestamp"]})


@pytest.fixture(scope="module")
def trained(tmp_path_factory, frame) -> Path:
    """A finished one-epoch run, copied by the cases that damage a run directory."""
    root = tmp_path_factory.mktemp("trained")
    frame.to_csv(root / "data.csv", index=False)
    (root / "config.yaml").write_text(base_yaml(root / "data.csv"))
    assert main(["train", str(root / "config.yaml"), "--out", str(root / "run")]) == 0
    return root / "run"


@dataclass
class Workspace:
    """Files a case builds its command from."""

    root: Path
    frame: pd.DataFrame
    trained: Path
    monkeypatch: pytest.MonkeyPatch

    @property
    def out(self) -> Path:
        return self.root / "out"

    def csv(self, frame: pd.DataFrame | None = None, raw: bytes | None = None) -> Path:
        path = self.root / "data.csv"
        if raw is not None:
            path.write_bytes(raw)
        else:
            (self.frame if frame is None else frame).to_csv(path, index=False)
        return path

    def config(self, text: str | bytes | None = None, csv: Path | None = None) -> Path:
        path = self.root / "config.yaml"
        if text is None:
            text = base_yaml(csv or self.csv())
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        return path

    def train(self, *overrides: str, config: Path | None = None) -> list[str]:
        return ["train", str(config or self.config()), "--out", str(self.out), *overrides]

    def damaged_run(self, name: str, content: bytes | Callable[[Path], None]) -> Path:
        run = self.root / "run"
        shutil.copytree(self.trained, run)
        if callable(content):
            content(run / name)
        else:
            (run / name).write_bytes(content)
        return run


def frame_with(ws: Workspace, row: int, column: str, value) -> pd.DataFrame:
    frame = ws.frame.copy().astype({"ts": float})
    frame.loc[row, column] = value
    return frame


def fail_to_write(ws: Workspace, code: int, target: str) -> None:
    """Make every write of `target` fail as a read-only or full disk does."""
    def refuse(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    ws.monkeypatch.setattr(target, refuse)


def truncated_checkpoint(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:200])


def other_models_checkpoint(path: Path) -> None:
    torch.save({"state": {"retriever.something_else": torch.zeros(3)}, "epoch": 1}, path)


# (id, command from a Workspace, words the one error line holds)
CASES: list[tuple[str, Callable[[Workspace], list[str]], str]] = [
    # --- the list of issue 12
    ("no validation rows (general, 2 interactions per user)", lambda ws: ws.train(
        *GENERAL, "--set", "data.min_user_interactions=1", "--set", "data.min_item_interactions=1",
        config=ws.config(csv=ws.csv(ws.frame.groupby("uid").head(2)))), "no validation rows"),
    ("binary YAML", lambda ws: ws.train(config=ws.config(bytes(range(256)))), "binary file"),
    ("YAML not UTF-8", lambda ws: ws.train(config=ws.config("task: s\xe9quentiel\n".encode("latin-1"))),
     "not UTF-8"),
    ("YAML a list", lambda ws: ws.train(config=ws.config("- train\n- epochs\n")), "top level must be a mapping"),
    ("YAML a scalar", lambda ws: ws.train(config=ws.config("just words\n")), "top level must be a mapping"),
    ("YAML key not a name", lambda ws: ws.train(config=ws.config("?\n")), "config keys must be names, got None"),
    ("YAML numeric key", lambda ws: ws.train(config=ws.config("train: {1: 2}\n")), "under 'train', got 1"),
    ("YAML section not a mapping", lambda ws: ws.train("--set", "train=5"), "'train': expected a mapping"),
    ("lr nan", lambda ws: ws.train("--set", "train.lr=.nan"), "train.lr"),
    ("lr inf", lambda ws: ws.train("--set", "train.lr=.inf"), "train.lr"),
    ("lr 0", lambda ws: ws.train("--set", "train.lr=0"), "train.lr"),
    ("lr text", lambda ws: ws.train("--set", "train.lr=fast"), "train.lr"),
    ("negative weight_decay", lambda ws: ws.train("--set", "train.weight_decay=-0.1"), "train.weight_decay"),
    ("weight_decay nan", lambda ws: ws.train("--set", "train.weight_decay=.nan"), "train.weight_decay"),
    ("eval_every 0", lambda ws: ws.train("--set", "train.eval_every=0"), "train.eval_every"),
    ("seed -1", lambda ws: ws.train("--set", "seed=-1"), "'seed'"),
    ("seed 2**32", lambda ws: ws.train("--set", f"seed={2**32}"), "'seed'"),
    ("embedding_dim 0", lambda ws: ws.train("--set", "retriever.embedding_dim=0"), "retriever.embedding_dim"),
    ("embedding_dim -4", lambda ws: ws.train("--set", "retriever.embedding_dim=-4"), "retriever.embedding_dim"),
    ("embedding_dim 2.5", lambda ws: ws.train("--set", "retriever.embedding_dim=2.5"), "retriever.embedding_dim"),
    ("ranker embedding_dim 0", lambda ws: ws.train(*RANKER, "--set", "ranker.embedding_dim=0"),
     "ranker.embedding_dim"),
    ("--out is a file", lambda ws: (ws.out.write_text("x"), ws.train())[1], "is a file"),
    ("--out under a file", lambda ws: ((ws.root / "f").write_text("x"),
                                       ["train", str(ws.config()), "--out", str(ws.root / "f" / "run")])[1],
     "Not a directory"),
    ("read-only disk", lambda ws: (fail_to_write(ws, errno.EROFS, "tandem.run.atomic_write_bytes"), ws.train())[1],
     "Read-only file system"),
    ("disk full while training", lambda ws: (fail_to_write(ws, errno.ENOSPC, "torch.save"), ws.train())[1],
     "No space left on device"),
    ("run config.yaml binary", lambda ws: ["evaluate", str(ws.damaged_run("config.yaml", b"\x00\x01\xff"))],
     "binary file"),
    ("run config.yaml not YAML", lambda ws: ["evaluate", str(ws.damaged_run("config.yaml", b"{task: [\n"))],
     "not valid YAML"),
    ("run config.yaml a list", lambda ws: ["evaluate", str(ws.damaged_run("config.yaml", b"- 1\n"))],
     "not a tandem run config"),
    ("run config.yaml unknown key", lambda ws: ["evaluate", str(ws.damaged_run("config.yaml", b"colour: red\n"))],
     "colour"),
    ("run best.pt garbage", lambda ws: ["evaluate", str(ws.damaged_run("best.pt", b"garbage"))],
     "cannot read checkpoint"),
    ("run best.pt truncated", lambda ws: ["evaluate", str(ws.damaged_run("best.pt", truncated_checkpoint))],
     "cannot read checkpoint"),
    ("run best.pt of another model", lambda ws: ["recommend", str(ws.damaged_run("best.pt", other_models_checkpoint)),
                                                 "--user", "u1"], "does not match"),
    ("num_negatives = catalogue", lambda ws: ws.train("--set", "train.num_negatives=60"), "train.num_negatives"),
    ("num_negatives > catalogue", lambda ws: ws.train("--set", "train.num_negatives=1000"), "train.num_negatives"),
    ("retrieval_cutoff > catalogue", lambda ws: ws.train(*RANKER, "--set", "eval.retrieval_cutoff=61"),
     "eval.retrieval_cutoff"),
    ("cutoff_sweep > catalogue", lambda ws: ws.train(*RANKER, "--set", "eval.cutoff_sweep=[10, 100]"),
     "eval.cutoff_sweep"),
    ("negative timestamp", lambda ws: ws.train(config=ws.config(csv=ws.csv(frame_with(ws, 3, "ts", -5.0)))),
     "line 5, column 'ts'"),
    ("infinite timestamp", lambda ws: ws.train(config=ws.config(csv=ws.csv(frame_with(ws, 3, "ts", math.inf)))),
     "line 5, column 'ts'"),
    ("missing timestamp", lambda ws: ws.train(config=ws.config(csv=ws.csv(frame_with(ws, 3, "ts", math.nan)))),
     "line 5, column 'ts'"),
    ("non-UTF-8 ids", lambda ws: ws.train(config=ws.config(csv=ws.csv(raw=b"uid,iid,ts\nu\xff,i1,1\nu\xfe,i1,2\n"))),
     "line 2: not valid UTF-8"),
    # --- more that a user meets
    ("config file missing", lambda ws: ["train", str(ws.root / "nope.yaml")], "not found"),
    ("config is a directory", lambda ws: ["train", str(ws.root)], "is a directory"),
    ("YAML tab indentation", lambda ws: ws.train(config=ws.config("train:\n\tepochs: 1\n")), "line 2, column 1"),
    ("YAML key given twice", lambda ws: ws.train(config=ws.config(base_yaml(ws.csv()) + "seed: 3\nseed: 4\n")),
     "appears twice"),
    ("extends cycle", lambda ws: ws.train(config=ws.config("extends: config.yaml\n")), "cycle"),
    ("--set without =", lambda ws: ws.train("--set", "train.epochs"), "key=value"),
    ("--set bad YAML", lambda ws: ws.train("--set", "train.epochs=[1"), "not valid YAML"),
    ("unknown key", lambda ws: ws.train("--set", "train.epochz=3"), "epochz"),
    ("patience 0", lambda ws: ws.train("--set", "train.patience=0"), "train.patience"),
    ("threads -1", lambda ws: ws.train("--set", "train.threads=-1"), "train.threads"),
    ("max_seq_len 0", lambda ws: ws.train("--set", "data.max_seq_len=0"), "data.max_seq_len"),
    ("split nan", lambda ws: ws.train(*GENERAL, "--set", "data.split=[.nan, 0.5, 0.5]"), "data.split"),
    ("split sums to 2", lambda ws: ws.train(*GENERAL, "--set", "data.split=[1, 0.5, 0.5]"), "data.split"),
    ("rating_threshold inf", lambda ws: ws.train("--set", "data.rating_threshold=.inf"), "data.rating_threshold"),
    ("dropout 1.5", lambda ws: ws.train("--set", "retriever.dropout=1.5"), "retriever.dropout"),
    ("sampler temperature 0", lambda ws: ws.train("--set", "sampler={name: midx, temperature: 0}"),
     "sampler.temperature"),
    ("sampler refresh 0", lambda ws: ws.train("--set", "sampler={name: midx, refresh: 0}"), "sampler.refresh"),
    ("SASRec on the general task", lambda ws: ws.train("--set", "task=general"), "needs task: sequential"),
    ("DIN on the general task", lambda ws: ws.train(*GENERAL, *RANKER), "needs task: sequential"),
    ("BST on the general task",
     lambda ws: ws.train(*GENERAL, *RANKER, "--set", "ranker={name: bst, embedding_dim: 8}"), "needs task: sequential"),
    ("caser on the general task",
     lambda ws: ws.train("--set", "task=general", "--set", "retriever={name: caser}"), "needs task: sequential"),
    ("gru4rec on the general task",
     lambda ws: ws.train("--set", "task=general", "--set", "retriever={name: gru4rec}"), "needs task: sequential"),
    ("bert4rec on the general task",
     lambda ws: ws.train("--set", "task=general", "--set", "retriever={name: bert4rec}"), "needs task: sequential"),
    ("data file empty", lambda ws: ws.train(config=ws.config(csv=ws.csv(raw=b""))), "empty"),
    ("data file header only", lambda ws: ws.train(config=ws.config(csv=ws.csv(raw=b"uid,iid,ts\n"))),
     "empty after filtering"),
    ("data file is a directory", lambda ws: ((ws.root / "d.csv").mkdir(),
                                             ws.train(config=ws.config(base_yaml(ws.root / "d.csv"))))[1],
     "found a directory"),
    ("evaluate a missing run", lambda ws: ["evaluate", str(ws.root / "nope")], "not a tandem run directory"),
    ("evaluate a file", lambda ws: ["evaluate", str(ws.config())], "not a tandem run directory"),
    ("evaluate a directory without best.pt", lambda ws: ["evaluate", str(ws.damaged_run("best.pt", Path.unlink))],
     "best.pt is missing"),
    ("recommend an unknown user", lambda ws: ["recommend", str(ws.trained), "--user", "nobody"], "nobody"),
    ("recommend retrieval cutoff > catalogue", lambda ws: ["recommend", str(ws.trained), "--user", "u1",
                                                          "--retrieval-cutoff", "61"], "larger than the catalogue"),
    ("recommend k 0", lambda ws: ["recommend", str(ws.trained), "--user", "u1", "--k", "0"], "--k"),
    ("no command", lambda ws: [], "required"),
    ("unknown option", lambda ws: ws.train("--colour", "red"), "--colour"),
    ("serve timeout 0", lambda ws: ["serve", str(ws.trained), "--timeout", "0"], "--timeout"),
    # --- found by a bad-input probe of the command line
    ("init_std negative", lambda ws: ws.train("--set", "retriever.init_std=-1"), "std"),
    ("embedding_dim too large to allocate", lambda ws: ws.train("--set", "retriever.embedding_dim=1000000000000"),
     "cannot build the models"),
    ("embedding_dim beyond int64 (torch adds C++ frames)",
     lambda ws: ws.train("--set", "retriever.embedding_dim=99999999999999999999999"), "Overflow"),
    ("out of memory while preparing the data", lambda ws: (
        ws.monkeypatch.setattr("tandem.run.prepare", lambda config: (_ for _ in ()).throw(
            MemoryError("Unable to allocate 1.96 TiB for an array"))), ws.train())[1], "out of memory"),
    ("recommend with a PQ index on 60 items", lambda ws: ["recommend", str(ws.trained), "--user", "u1",
                                                         "--index", "PQ4"], "cannot be trained on 60 items"),
    ("recommend with HNSW0 (FAISS would abort)", lambda ws: ["recommend", str(ws.trained), "--user", "u1",
                                                           "--index", "HNSW0"], "at least 2 links"),
    ("train --out empty", lambda ws: ["train", str(ws.config()), "--out", ""], "--out is empty"),
    ("user and item the same column", lambda ws: ws.train(
        "--set", "data.columns={user: uid, item: uid, timestamp: ts}"), "both name the column 'uid'"),
    ("retrieval cutoff below the largest metric cutoff", lambda ws: ws.train(
        *RANKER, "--set", "eval.retrieval_cutoff=3"), "fewer than the largest of eval.cutoffs"),
    ("metric cutoff beyond the catalogue", lambda ws: ws.train(
        "--set", "eval.cutoffs=[5, 1000]", "--set", "eval.monitor=ndcg@5"), "catalogue has 60 items"),
    ("recommend k beyond the catalogue", lambda ws: ["recommend", str(ws.trained), "--user", "u1", "--k", "61"],
     "more than the catalogue"),
    ("data file is a device", lambda ws: ((ws.root / "dev.csv").symlink_to("/dev/null"),
                                          ws.train(config=ws.config(base_yaml(ws.root / "dev.csv"))))[1],
     "a device, pipe"),
    ("config file is a device", lambda ws: ["train", "/dev/null", "--out", str(ws.out)], "a device, pipe"),
    ("gzip data named .csv", lambda ws: ws.train(config=ws.config(csv=ws.csv(
        raw=gzip.compress(ws.frame.to_csv(index=False).encode())))), "gzip-compressed"),
]


def invoke(argv: list[str], capsys) -> tuple[int, str]:
    try:
        code = main(argv)
    except SystemExit as stop:  # argparse
        code = stop.code
    return code, capsys.readouterr().err


@pytest.mark.parametrize("case, command, words", CASES, ids=[case[0] for case in CASES])
def test_bad_input_is_one_line_and_exit_2(case, command, words, tmp_path, frame, trained, monkeypatch, capsys):
    ws = Workspace(tmp_path, frame, trained, monkeypatch)
    argv = command(ws)
    out_existed = ws.out.exists()
    code, err = invoke(argv, capsys)
    assert code == 2, err
    assert err.count("\n") == 1 and err.endswith("\n"), err
    assert words in err and "Traceback" not in err, err
    if not out_existed:
        assert not ws.out.exists(), "a half-written run directory was left"


def test_yaml_1e3_is_a_number_and_written_back_the_same(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train: {lr: 1e-3, weight_decay: 5E-5}\nsampler: {name: midx, temperature: 2e0}\n")
    config = load_config(path, ["train.batch_size=1_024", "loss={name: croloss, alpha: -1e-2}"])
    assert config.train.lr == 0.001 and config.train.weight_decay == 5e-5
    assert config.sampler["temperature"] == 2.0 and config.loss["alpha"] == -0.01 and config.train.batch_size == 1024
    assert load_config(None, ["data.name=1e3x"]).data.name == "1e3x"  # text that only looks like a number stays text


def test_duplicates_are_dropped_keeping_the_first_and_counted(tmp_path, frame, capsys):
    doubled = pd.concat([frame, frame.iloc[:50]], ignore_index=True)  # 50 rows given twice
    doubled.to_csv(tmp_path / "data.csv", index=False)
    config = tmp_path / "c.yaml"
    config.write_text(base_yaml(tmp_path / "data.csv"))
    assert main(["data", "stats", str(config)]) == 0
    printed = capsys.readouterr().out
    stats = {line.split()[0]: line.split()[-1] for line in printed.splitlines() if line.strip()}
    assert stats["duplicates_dropped"] == "50" and stats["interactions"] == str(len(frame))
    # the general task keeps one interaction per user-item pair: the earliest
    again = frame.copy()
    again["ts"] = again["ts"] + 1000  # the same pairs, later
    raw_frame = pd.concat([again, frame], ignore_index=True).rename(columns={"uid": "user", "iid": "item",
                                                                            "ts": "timestamp"})
    from tandem.data.raw import RawDataset

    data = preprocess(RawDataset("x", raw_frame), None, 1, 1, duplicates="pairs")
    pairs = len(frame.drop_duplicates(["uid", "iid"]))
    assert data.num_interactions == pairs and data.duplicates_dropped == len(raw_frame) - pairs
    assert data.timestamps.max() == frame["ts"].max()  # the later copies went


def test_a_refused_write_mid_run_leaves_no_run_directory(tmp_path, frame, monkeypatch, capsys):
    """A disk that fills after best.pt was written (report.json fails): the whole run directory goes."""
    frame.to_csv(tmp_path / "data.csv", index=False)
    (tmp_path / "c.yaml").write_text(base_yaml(tmp_path / "data.csv"))

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("tandem.run.atomic_write_json", full)
    code, err = invoke(["train", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "run")], capsys)
    assert code == 2 and "No space left on device" in err and err.count("\n") == 1
    assert not (tmp_path / "run").exists()


def test_version_and_evaluate_json_only(trained, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0 and capsys.readouterr().out.startswith("tandem ")
    assert main(["evaluate", str(trained), "--json"]) == 0
    assert set(json.loads(capsys.readouterr().out)) == {"valid", "test"}


# ------------------------------------------------------------------------------------------------ readers, any bytes

FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
MAPPING = {"user": "uid", "item": "iid", "timestamp": "ts"}
cells = st.one_of(st.text(max_size=6), st.sampled_from(["", "nan", "-1", "1e400", '"', "a,b", "\t", "3.5", "\xff"]))


def readers_only_raise_tandem_errors(read: Callable[[], object]) -> None:
    try:
        raw = read()
    except TandemError as error:
        assert "\n" not in str(error)
        return
    try:  # and what was read goes through preprocessing cleanly too
        preprocess(raw, None, 1, 1)
    except TandemError:
        pass


@FAST
@given(data=st.binary(max_size=300))
def test_table_reader_on_arbitrary_bytes(tmp_path, data):
    path = tmp_path / "log.csv"
    path.write_bytes(b"uid,iid,ts\n" + data)
    readers_only_raise_tandem_errors(lambda: read_table(path, MAPPING))


@FAST
@given(rows=st.lists(st.lists(cells, min_size=2, max_size=4), max_size=8), quote=st.booleans())
def test_table_reader_on_ragged_cells(tmp_path, rows, quote):
    path = tmp_path / "log.csv"
    wrap = (lambda cell: '"' + cell.replace('"', '""') + '"') if quote else (lambda cell: cell)
    text = "uid,iid,ts\n" + "".join(",".join(wrap(cell) for cell in row) + "\n" for row in rows)
    path.write_bytes(text.encode("utf-8", errors="surrogatepass"))
    readers_only_raise_tandem_errors(lambda: read_table(path, MAPPING))


@FAST
@given(data=st.binary(max_size=300), header=st.sampled_from([
    b"user_id:token\titem_id:token\ttimestamp:float\n", b"user_id:token\titem_id:token\n",
    b"user_id:token\titem_id:token\trating:float\ttimestamp:float\n", b""]))
def test_atomic_reader_on_arbitrary_bytes(tmp_path, data, header):
    (tmp_path / "toy.inter").write_bytes(header + data)
    readers_only_raise_tandem_errors(lambda: read_atomic(tmp_path, "toy"))


@FAST
@given(data=st.binary(max_size=300), name=st.sampled_from(["u.data", "ratings.dat", "ratings.csv"]))
def test_movielens_reader_on_arbitrary_bytes(tmp_path, data, name):
    for old in tmp_path.iterdir():
        old.unlink()
    (tmp_path / name).write_bytes(data)
    readers_only_raise_tandem_errors(lambda: read_movielens(tmp_path))


tokens = st.text(alphabet=string.ascii_letters + string.digits + "éü_-:;'\"|", min_size=1, max_size=5)


@FAST
@given(rows=st.lists(st.tuples(tokens, tokens, st.integers(0, 2**40)), min_size=1, max_size=12))
def test_table_reader_round_trip(tmp_path, rows):
    """What pandas writes as CSV is read back as the same ids (as text) and timestamps."""
    frame = pd.DataFrame(rows, columns=["uid", "iid", "ts"])
    frame.to_csv(tmp_path / "log.csv", index=False)
    raw = read_table(tmp_path / "log.csv", MAPPING)
    assert list(raw.interactions["user"].astype(str)) == list(frame["uid"])
    assert list(raw.interactions["item"].astype(str)) == list(frame["iid"])
    np.testing.assert_array_equal(raw.interactions["timestamp"].to_numpy(), frame["ts"].to_numpy(dtype=float))


yaml_pieces = st.sampled_from(["train:", "  lr: ", "epochs: ", "- ", "{", "}", "[", "]", ": ", "\n", "  ", "1e-3",
                               ".nan", "-1", "0", "seed", "extends: ", "x.yaml", "&a ", "*a", "!!python/object ",
                               "'", '"', "\t", "task: general", "eval:", "  cutoffs: [5]", "null", "<<: "])


@FAST
@given(text=st.one_of(st.text(max_size=80), st.lists(yaml_pieces, max_size=20).map("".join)))
def test_config_reader_on_arbitrary_text(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text, encoding="utf-8")
    try:
        load_config(path)
    except TandemError as error:
        assert "\n" not in str(error)


@FAST
@given(data=st.binary(max_size=120))
def test_config_reader_on_arbitrary_bytes(tmp_path, data):
    path = tmp_path / "c.yaml"
    path.write_bytes(data)
    try:
        load_config(path)
    except TandemError as error:
        assert "\n" not in str(error)
