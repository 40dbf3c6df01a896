"""Self-contained run directories (issue 12): a run directory alone serves and evaluates (vocabulary, interactions,
feature tables and a fingerprint stored without pickle); an edited data file cannot change a run, and is refused
when it is needed; an unfinished run is never taken for a finished one; one writer per directory; a non-empty
--out needs --resume or --overwrite."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tandem.cli import main
from tandem.data.synthetic import markov_interactions
from tandem.rundir import RunLock, fingerprint, load_data
from tandem.training.trainer import Trainer

SEQUENTIAL = """task: sequential
data: {{format: {fmt}, path: {path}, {columns}min_user_interactions: 5, min_item_interactions: 2, max_seq_len: 5}}
retriever: {{name: sasrec, embedding_dim: 8, dropout: 0.1}}
train: {{epochs: 1, batch_size: 64, num_negatives: 5, progress: false}}
eval: {{cutoffs: [5, 10], retrieval_cutoff: 20, monitor: ndcg@10}}
"""
CSV_COLUMNS = "columns: {user: uid, item: iid, timestamp: ts}, "
RANKER = "ranker: {name: din, embedding_dim: 8}\nscheme: {name: independent}\n"


def interactions() -> pd.DataFrame:
    """40 users x 60 items, 12 interactions each, string ids u<n> and i<n>."""
    data = markov_interactions(40, 60, per_user=12, seed=3).interactions
    return pd.DataFrame({"uid": "u" + data["user"].astype(str), "iid": "i" + data["item"].astype(str),
                         "ts": data["timestamp"]})


def write_csv(root: Path, frame: pd.DataFrame | None = None) -> Path:
    (interactions() if frame is None else frame).to_csv(root / "data.csv", index=False)
    config = root / "config.yaml"
    config.write_text(SEQUENTIAL.format(fmt="table", path=root / "data.csv", columns=CSV_COLUMNS))
    return config


def write_atomic(root: Path) -> Path:
    """The same interactions as RecBole atomic files, with user and item features (categorical, multi, numeric)."""
    frame = interactions()
    folder = root / "tiny"
    folder.mkdir()
    lines = ["user_id:token\titem_id:token\ttimestamp:float"]
    lines += [f"{u}\t{i}\t{t}" for u, i, t in frame.itertuples(index=False)]
    (folder / "tiny.inter").write_text("\n".join(lines) + "\n")
    items = sorted(frame["iid"].unique())
    (folder / "tiny.item").write_text("item_id:token\tgenre:token_seq\tyear:token\tprice:float\n" + "".join(
        f"{item}\tg{n % 3} g{n % 5}\t{1990 + n % 7}\t{n * 0.5}\n" for n, item in enumerate(items)))
    users = sorted(frame["uid"].unique())
    (folder / "tiny.user").write_text("user_id:token\tage:token\n" + "".join(
        f"{user}\t{20 + n % 4}\n" for n, user in enumerate(users)))
    config = root / "config.yaml"
    config.write_text(SEQUENTIAL.format(fmt="atomic", path=folder, columns="") + RANKER)
    return config


def evaluated(run: Path, capsys) -> dict:
    capsys.readouterr()
    assert main(["evaluate", str(run), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def one_line_error(argv: list[str], capsys) -> str:
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as stop:  # argparse
        code = stop.code
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_run_directory_alone_evaluates_and_serves_with_features_and_no_pickle(tmp_path, capsys):
    config = write_atomic(tmp_path)
    run = tmp_path / "run"
    assert main(["train", str(config), "--out", str(run)]) == 0
    report = json.loads((run / "report.json").read_text())
    stored = run / "data"
    manifest = json.loads((stored / "manifest.json").read_text())
    vocabulary = json.loads((stored / "vocabulary.json").read_text())
    frame = interactions()
    assert vocabulary["users"]["tokens"] == sorted(frame["uid"].unique())  # index = position
    assert vocabulary["items"]["tokens"] == sorted(frame["iid"].unique())  # index = position + 1 (0: padding)
    kinds = {entry["name"]: entry["kind"] for entry in manifest["item_features"] + manifest["user_features"]}
    assert kinds == {"genre": "multi", "year": "categorical", "price": "numeric", "age": "categorical"}
    for name in ("interactions.npz", "features.npz"):  # numbers only: loading needs no pickle
        with np.load(stored / name, allow_pickle=False) as archive:
            assert all(archive[key].dtype != object for key in archive.files)
    assert manifest["fingerprint"] == report["dataset"]["fingerprint"] == fingerprint(load_data(run))
    shutil.rmtree(tmp_path / "tiny")  # the data files are gone: the run directory is enough
    assert evaluated(run, capsys)["test"] == report["test"]
    assert main(["recommend", str(run), "--user", "u1", "--k", "3", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["recommendations"]) == 3
    from tandem.run import load_run

    _, prepared, scheme = load_run(run)  # the ranker's feature tables come from the run directory
    assert set(prepared.data.item_features) == {"genre", "year", "price"} and set(prepared.data.user_features) == {
        "age"}
    assert scheme.ranker.item_features.num_fields == 3


def test_relabelled_data_cannot_change_a_run_and_is_refused_when_needed(tmp_path, capsys):
    config = write_csv(tmp_path)
    run = tmp_path / "run"
    assert main(["train", str(config), "--out", str(run)]) == 0
    report = json.loads((run / "report.json").read_text())
    original = (tmp_path / "data.csv").read_bytes()
    relabelled = interactions()
    relabelled["iid"] = relabelled["iid"].map({"i1": "i2", "i2": "i1"}).fillna(relabelled["iid"])  # two swapped
    relabelled.to_csv(tmp_path / "data.csv", index=False)
    assert evaluated(run, capsys)["test"] == report["test"]  # the stored data, not the edited file
    (run / "data" / "interactions.npz").unlink()  # evaluation now needs the data file: refused
    err = one_line_error(["evaluate", str(run)], capsys)
    assert "no longer matches the data" in err and "data.csv" in err
    (tmp_path / "data.csv").write_bytes(original)  # the original file matches its fingerprint again
    assert evaluated(run, capsys)["test"] == report["test"]


def test_an_edited_file_in_the_run_directory_is_refused(tmp_path, capsys):
    config = write_csv(tmp_path)
    run = tmp_path / "run"
    assert main(["train", str(config), "--out", str(run)]) == 0
    path = run / "data" / "vocabulary.json"
    vocabulary = json.loads(path.read_text())
    tokens = vocabulary["users"]["tokens"]
    tokens[0], tokens[1] = tokens[1], tokens[0]  # user ids relabelled
    path.write_text(json.dumps(vocabulary))
    assert "does not match its fingerprint" in one_line_error(["evaluate", str(run)], capsys)
    (run / "data" / "interactions.npz").write_bytes(b"not a zip")
    assert "interactions.npz" in one_line_error(["recommend", str(run), "--user", "u1"], capsys)


def test_an_unfinished_run_is_refused_and_one_writer_at_a_time(tmp_path, monkeypatch, capsys):
    config = write_csv(tmp_path)
    run = tmp_path / "run"

    class Killed(BaseException):
        pass

    def killed(self, *args, **kwargs):
        raise Killed

    monkeypatch.setattr(Trainer, "evaluate", killed)  # dies before the end of epoch 1: after its checkpoint
    with pytest.raises(Killed):
        main(["train", str(config), "--out", str(run), "--set", "train.checkpoint_every=2"])
    monkeypatch.undo()
    assert (run / "checkpoint.pt").is_file() and not (run / "report.json").exists()
    (run / "best.pt").write_bytes((run / "checkpoint.pt").read_bytes())  # even with a best.pt there
    err = one_line_error(["evaluate", str(run)], capsys)
    assert "unfinished run" in err and f"tandem train --out {run} --resume" in err
    assert "unfinished run" in one_line_error(["recommend", str(run), "--user", "u1"], capsys)
    lock = RunLock(run)  # a live `tandem train` writing into it
    lock.acquire()
    try:
        assert "another tandem train (pid" in one_line_error(["train", "--out", str(run), "--resume"], capsys)
        assert "still being trained (pid" in one_line_error(["evaluate", str(run)], capsys)
        assert (run / "checkpoint.pt").is_file()  # the refused writer touched nothing
    finally:
        lock.release()
    assert main(["train", "--out", str(run), "--resume"]) == 0
    assert (run / "report.json").is_file() and not (run / "checkpoint.pt").exists()  # keep_checkpoint: false


def test_a_non_empty_out_needs_resume_or_overwrite(tmp_path, capsys):
    config = write_csv(tmp_path)
    run = tmp_path / "run"
    assert main(["train", str(config), "--out", str(run)]) == 0
    report = (run / "report.json").read_bytes()
    err = one_line_error(["train", str(config), "--out", str(run)], capsys)
    assert "not empty" in err and "--resume" in err and "--overwrite" in err
    assert main(["train", str(config), "--out", str(run), "--resume"]) == 0  # complete: left as it is
    assert (run / "report.json").read_bytes() == report
    err = one_line_error(["train", str(config), "--out", str(run), "--resume", "--set", "train.lr=0.01"], capsys)
    assert "'train.lr' differs" in err
    assert "--overwrite" in one_line_error(["train", str(config), "--out", str(run), "--resume", "--overwrite"],
                                           capsys)
    assert "--resume needs --out" in one_line_error(["train", str(config), "--resume"], capsys)
    assert main(["train", str(config), "--out", str(run), "--overwrite", "--set", "seed=7"]) == 0
    assert json.loads((run / "metrics.jsonl").read_text().splitlines()[0])["epoch"] == 1
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 1
    assert "seed: 7" in (run / "config.yaml").read_text()
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    assert "no config.yaml" in one_line_error(["train", str(config), "--out", str(other), "--overwrite"], capsys)
    assert (other / "notes.txt").read_text() == "mine"
    fresh = tmp_path / "fresh"  # --resume where nothing was started yet: the same command starts it
    assert main(["train", str(config), "--out", str(fresh), "--resume"]) == 0
    assert (fresh / "report.json").is_file()


@pytest.mark.parametrize("flag", ["--overwrite", "--resume"])
def test_a_folder_of_the_users_own_files_with_a_config_yaml_is_never_cleared(flag, tmp_path, capsys):
    """A project folder holding its own config.yaml beside other files is not a run directory: --overwrite and
    --resume refuse it with one line and delete nothing (they once cleared everything but config.yaml)."""
    config = write_csv(tmp_path)
    project = tmp_path / "project"
    project.mkdir()
    (project / "config.yaml").write_text(config.read_text())
    (project / "notes.txt").write_text("mine")
    (project / "data").mkdir()
    (project / "data" / "raw.csv").write_text("user,item\n")
    before = sorted(path.relative_to(project) for path in project.rglob("*"))
    err = one_line_error(["train", str(project / "config.yaml"), "--out", str(project), flag], capsys)
    assert "tandem does not write" in err and "notes.txt" in err and "data/raw.csv" in err
    assert sorted(path.relative_to(project) for path in project.rglob("*")) == before
    assert (project / "notes.txt").read_text() == "mine"


def test_a_damaged_report_or_deleted_data_is_refused(tmp_path, capsys):
    """report.json must be the report tandem wrote; with data/ deleted, the configured file is checked against
    the fingerprint the report recorded (here: the file was relabelled)."""
    config = write_csv(tmp_path)
    run = tmp_path / "run"
    assert main(["train", str(config), "--out", str(run)]) == 0
    report = (run / "report.json").read_text()
    for damaged in ("", "[1, 2]", report[:50]):
        (run / "report.json").write_text(damaged)
        assert "report.json" in one_line_error(["evaluate", str(run)], capsys)
    (run / "report.json").write_text(report)
    shutil.rmtree(run / "data")
    data = tmp_path / "data.csv"
    rows = data.read_text().splitlines()
    data.write_text("\n".join([rows[0]] + [row.replace(",i", ",j") for row in rows[1:]]) + "\n")
    assert "no longer matches" in one_line_error(["evaluate", str(run)], capsys)
