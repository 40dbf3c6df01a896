"""The command line end to end on a tiny dataset, and clean errors on bad input."""
import json

import pytest

from tandem.cli import main
from tandem.data.synthetic import markov_interactions


@pytest.fixture()
def tiny_csv(tmp_path):
    frame = markov_interactions(40, 60, per_user=12, seed=3).interactions
    frame = frame.rename(columns={"user": "uid", "item": "iid", "timestamp": "ts"})
    path = tmp_path / "tiny.csv"
    frame.to_csv(path, index=False)
    return path


def tiny_yaml(csv, epochs=2, train_extra="", extra=""):
    """The tiny sequential config every CLI-level test starts from (SASRec, 5-item histories)."""
    return f"""task: sequential
data:
  format: table
  path: {csv}
  columns: {{user: uid, item: iid, timestamp: ts}}
  min_user_interactions: 5
  min_item_interactions: 2
  max_seq_len: 5
retriever: {{name: sasrec, embedding_dim: 16, dropout: 0.1}}
train: {{epochs: {epochs}, batch_size: 64, num_negatives: 5, progress: false{train_extra}}}
eval: {{cutoffs: [5, 10], retrieval_cutoff: 20, monitor: ndcg@10}}
{extra}"""


def tiny_config(tmp_path, csv, extra=""):
    path = tmp_path / "tiny.yaml"
    path.write_text(tiny_yaml(csv, extra=extra))
    return path


def test_train_evaluate_and_stats_end_to_end(tmp_path, tiny_csv, capsys):
    config = tiny_config(tmp_path, tiny_csv)
    out = tmp_path / "run"
    assert main(["train", str(config), "--out", str(out), "--set", "train.epochs=2"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert set(report) >= {"valid", "test", "epochs_run", "seconds_per_epoch", "dataset"}
    assert report["epochs_run"] == 2 and 0 <= report["test"]["ndcg@10"] <= 1
    assert report["dataset"]["users"] == 40
    assert (out / "best.pt").is_file() and (out / "config.yaml").is_file()
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2 and "valid" in json.loads(lines[0])
    assert "ndcg@10" in capsys.readouterr().out
    assert main(["evaluate", str(out), "--json"]) == 0
    evaluated = json.loads(capsys.readouterr().out)  # JSON only: no table before it
    assert abs(evaluated["test"]["ndcg@10"] - report["test"]["ndcg@10"]) < 1e-9
    assert main(["data", "stats", str(config)]) == 0
    assert "interactions" in capsys.readouterr().out


@pytest.mark.parametrize(
    "override, message",
    [
        ("sampler={name: nosuch}", "nosuch"),
        ("retriever={name: nosuch}", "nosuch"),
        ("retriever.hidden=3", "hidden"),
        ("loss={name: nosuch}", "nosuch"),
        ("scheme={name: nosuch}", "nosuch"),
        ("ranker={name: nosuch}", "nosuch"),
        ("data.min_user_interactions=1000", "empty after filtering"),
        ("train.epochs=-1", "train.epochs"),
    ],
)
def test_bad_input_gives_one_clear_error_and_no_run_directory(tmp_path, tiny_csv, capsys, override, message):
    config = tiny_config(tmp_path, tiny_csv, "scheme: {name: independent}" if override.startswith("ranker") else "")
    out = tmp_path / "run"
    assert main(["train", str(config), "--out", str(out), "--set", override]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.count("\n") == 1
    assert not out.exists()


def test_missing_data_file_and_malformed_line(tmp_path, tiny_csv, capsys):
    config = tiny_config(tmp_path, tmp_path / "absent.csv")
    assert main(["train", str(config), "--out", str(tmp_path / "r1")]) == 2
    assert "absent.csv" in capsys.readouterr().err
    bad = tmp_path / "bad.csv"
    bad.write_text("uid,iid,ts\n1,2,3\n4,5\n")
    config = tiny_config(tmp_path, bad)
    assert main(["train", str(config), "--out", str(tmp_path / "r2")]) == 2
    err = capsys.readouterr().err
    assert "bad.csv" in err and "line 3" in err
    assert not (tmp_path / "r1").exists() and not (tmp_path / "r2").exists()


def test_unknown_config_key_from_the_command_line(tmp_path, tiny_csv, capsys):
    config = tiny_config(tmp_path, tiny_csv)
    assert main(["train", str(config), "--set", "train.epochz=1", "--out", str(tmp_path / "r")]) == 2
    assert "epochz" in capsys.readouterr().err


def test_demo_runs_end_to_end_on_a_small_config(tmp_path, monkeypatch, capsys, tiny_csv):
    """The demo's loop and table, pointed at tiny configs instead of MovieLens-100K."""
    import tandem.demo as demo

    base = tiny_config(tmp_path, tiny_csv)
    corr = tmp_path / "corr.yaml"
    corr.write_text(f"extends: {base.name}\nranker: {{name: din, embedding_dim: 16}}\n"
                    "sampler: {name: midx, num_clusters: 4}\nscheme: {name: corr}\n")
    monkeypatch.setattr(demo, "CONFIGS", tmp_path)
    monkeypatch.setattr(demo, "SASREC_CONFIG", base.name)
    monkeypatch.setattr(demo, "CORR_CONFIG", corr.name)
    assert demo.main(["--epochs", "1", "--out", str(tmp_path / "demo")]) == 0
    printed = capsys.readouterr().out
    for row in ("SASRec alone", "CoRR retriever (SASRec)", "CoRR pipeline, DIN order (paper)",
                "CoRR pipeline, fused (tandem)", "fused order: weight"):
        assert row in printed
    assert (tmp_path / "demo" / "corr" / "report.json").is_file()


def test_demo_summarises_the_committed_converged_runs(tmp_path, monkeypatch):
    """The demo's closing sentence comes from the converged results.csv (means over seeds of the final stage),
    and says whether CoRR's pipeline beat the retriever alone."""
    import tandem.demo as demo

    monkeypatch.setattr(demo, "ROOT", tmp_path)
    rows = ["method,seed,split,stage,metric,value",
            "retriever,1,test,retriever,ndcg@10,0.10", "retriever,2,test,retriever,ndcg@10,0.12",
            "corr,1,test,retriever,ndcg@10,0.50", "corr,1,test,pipeline,ndcg@10,0.08",
            "corr,1,valid,pipeline,ndcg@10,0.90"]
    path = tmp_path / "results.csv"
    path.write_text("\n".join(rows) + "\n")
    text = demo.converged_summary(path)
    assert "SASRec alone 0.1100 (2 seeds)" in text and "CoRR (paper) 0.0800 (1 seed)" in text
    assert "does not reproduce" in text and "the best is SASRec alone" in text
    path.write_text("\n".join(rows).replace("pipeline,ndcg@10,0.08", "pipeline,ndcg@10,0.20") + "\n")
    assert "CoRR's pipeline beats SASRec alone" in demo.converged_summary(path)
    assert "MF alone" in demo.converged_summary(path, retriever="MF")
    assert demo.converged_summary(tmp_path / "absent.csv") is None


def test_progress_is_one_line_per_epoch_when_not_a_terminal(tmp_path, tiny_csv, capsys):
    config = tiny_config(tmp_path, tiny_csv)
    assert main(["train", str(config), "--out", str(tmp_path / "run"), "--set", "train.progress=true",
                 "--set", "train.epochs=3", "--set", "train.eval_every=2", "--set", "train.batch_size=32"]) == 0
    err = capsys.readouterr().err
    assert "\r" not in err
    assert [line.split(":")[0] for line in err.splitlines()] == ["epoch 1/3", "epoch 2/3", "epoch 3/3"]
