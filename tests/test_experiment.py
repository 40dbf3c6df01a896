"""`tandem experiment`: a tiny table over two seeds — outputs, per-user pairing, resume of finished runs."""
import csv

import numpy as np
import pytest

from tandem.cli import main
from tandem.errors import TandemError
from tandem.experiments.runner import read_per_user, run_experiment
from tandem.experiments.spec import load_spec
from tandem.experiments.tables import paired_test

from test_cli import tiny_config, tiny_csv  # noqa: F401  (fixture)


def write_spec(tmp_path, config):
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"""name: tiny
seeds: [1, 2]
reference: independent
metrics: [recall@10, ndcg@10]
overrides: [train.epochs=2, train.patience=2]
methods:
  retriever: {{config: {config.name}}}
  independent:
    config: {config.name}
    overrides: ["ranker={{name: din, embedding_dim: 8, attention_hidden: 8, mlp_hidden: [8]}}", "scheme.name=independent"]
    reference: retriever
published:
  independent: {{ndcg@10: 1.5}}
plot: {{kind: bar, metric: ndcg@10}}
""")
    return spec


def test_experiment_outputs_and_resume(tmp_path, tiny_csv, capsys):  # noqa: F811
    config = tiny_config(tmp_path, tiny_csv)
    spec_path = write_spec(tmp_path, config)
    out = tmp_path / "out"
    assert main(["experiment", str(spec_path), "--out", str(out)]) == 0
    with open(out / "results.csv") as stream:
        rows = list(csv.DictReader(stream))
    assert set(rows[0]) == {"method", "seed", "split", "stage", "metric", "value"}
    assert {(r["method"], r["stage"]) for r in rows} == {
        ("retriever", "retriever"), ("independent", "retriever"), ("independent", "pipeline")}
    assert {r["seed"] for r in rows} == {"1", "2"} and {r["split"] for r in rows} == {"valid", "test"}
    per_user = read_per_user(out / "per_user" / "independent-s1.csv")
    # the per-user mean is the report's test figure
    report_value = next(float(r["value"]) for r in rows if r["method"] == "independent" and r["seed"] == "1"
                        and r["split"] == "test" and r["stage"] == "pipeline" and r["metric"] == "ndcg@10")
    assert abs(per_user["pipeline"]["ndcg@10"].mean() - report_value) < 1e-8
    table = (out / "table.md").read_text()
    assert "| independent | pipeline | 2 |" in table and "1.50" in table and "p (W / t)" in table
    # the method's own reference (retriever) replaces the spec's (itself, which would give no comparison)
    cells = lambda line: [cell.strip() for cell in line.strip("|").split("|")]  # noqa: E731
    header = cells(next(line for line in table.splitlines() if line.startswith("| method |")))
    row = cells(next(line for line in table.splitlines() if line.startswith("| independent | pipeline |")))
    assert row[header.index("Δ ndcg@10 vs ref")].endswith("%") and "`independent` vs `retriever`" in table
    # the two-stage method's retriever row is compared with the reference's retriever, from the per-user rows
    own = cells(next(line for line in table.splitlines() if line.startswith("| independent | retriever |")))
    mine = np.concatenate([read_per_user(out / "per_user" / f"independent-s{s}.csv")["retriever"]["ndcg@10"]
                           for s in (1, 2)])
    theirs = np.concatenate([read_per_user(out / "per_user" / f"retriever-s{s}.csv")["retriever"]["ndcg@10"]
                             for s in (1, 2)])
    assert own[header.index("Δ ndcg@10 vs ref")] == f"{100 * (mine.mean() / theirs.mean() - 1):+.1f} %"
    assert (out / "tiny.png").stat().st_size > 1000
    # resume: finished runs are skipped (their files untouched); an interrupted run is redone
    stamp = (out / "runs" / "retriever-s1" / "best.pt").stat().st_mtime_ns
    (out / "runs" / "independent-s2" / "report.json").unlink()
    run_experiment(load_spec(spec_path), out, log=lambda text: None)
    assert (out / "runs" / "retriever-s1" / "best.pt").stat().st_mtime_ns == stamp
    assert (out / "runs" / "independent-s2" / "report.json").is_file()
    # reuse: another spec naming the same run copies it (same config, execution keys aside) instead of training
    other = tmp_path / "other.yaml"
    reuse = f"reuse: {{dir: {out.name}, method: retriever}}"
    other.write_text(f"""name: other
seeds: [1]
overrides: [train.epochs=2, train.patience=2, train.threads=1]
methods:
  same: {{config: {config.name}, {reuse}}}
  changed: {{config: {config.name}, overrides: [train.lr=0.5], {reuse}}}
""")
    lines: list[str] = []
    with pytest.raises(TandemError, match="different config .key 'train.lr'"):
        run_experiment(load_spec(other), tmp_path / "other", log=lines.append)
    assert any(line.startswith("reuse: same-s1 copied") for line in lines)
    copied = read_per_user(tmp_path / "other" / "per_user" / "same-s1.csv")
    source = read_per_user(out / "per_user" / "retriever-s1.csv")
    assert np.array_equal(copied["retriever"]["ndcg@10"], source["retriever"]["ndcg@10"])
    assert not (tmp_path / "other" / "runs" / "changed-s1").exists()
    # a source that is not finished trains the run here, even over a stale per-user file
    stale = tmp_path / "stale.yaml"
    stale.write_text(f"""name: stale
seeds: [1]
overrides: [train.epochs=1, train.patience=1]
methods:
  late: {{config: {config.name}, reuse: {{dir: {out.name}, method: nothing}}}}
""")
    (tmp_path / "stale" / "per_user").mkdir(parents=True)
    (tmp_path / "stale" / "per_user" / "late-s1.csv").write_text("row,user,stage,ndcg@10\n")
    run_experiment(load_spec(stale), tmp_path / "stale", log=lambda text: None)
    assert (tmp_path / "stale" / "runs" / "late-s1" / "report.json").is_file()
    # the same config over data that changed since is refused (fingerprint), nothing copied
    tiny_csv.write_text(tiny_csv.read_text().replace("\n", "\n", 1) + "0,1,99999999\n")
    (tmp_path / "other" / "runs" / "same-s1").rename(tmp_path / "other" / "runs" / "moved")
    (tmp_path / "other" / "per_user" / "same-s1.csv").unlink()
    with pytest.raises(TandemError, match="other data"):
        run_experiment(load_spec(other), tmp_path / "other", log=lambda text: None)
    assert not (tmp_path / "other" / "runs" / "same-s1").exists()


def test_paired_test_matches_a_hand_computed_t_statistic():
    rng = np.random.default_rng(0)
    a = rng.random(50)
    b = a - 0.05 + 0.01 * rng.standard_normal(50)
    _, p_t = paired_test(a, b)
    d = a - b
    t = d.mean() / (d.std(ddof=1) / np.sqrt(len(d)))
    from scipy.stats import t as student
    assert abs(p_t - 2 * student.sf(abs(t), len(d) - 1)) < 1e-12
    assert paired_test(a, a.copy()) == (1.0, 1.0)


@pytest.mark.parametrize("body, message", [
    ("methods: {a: {config: spec.yaml, reuse: somewhere}}\n", "'reuse' must be"),
    ("methods: {a: {config: spec.yaml, reuse: {dir: ., method: ../b}}}\n", "must be a method name"),
    ("methods: {a: {config: spec.yaml, reuse: {dir: nowhere, method: b}}}\n", "not a directory"),
    ("seeds: [1]\n", "methods"),
    ("methods: {a: {config: nowhere.yaml}}\n", "does not exist"),
    ("seeds: [1]\nseeds: [2]\n", "twice|duplicate"),
    ("methods: {a: {config: spec.yaml}}\nreference: b\n", "reference"),
    ("methods: {a: {config: spec.yaml, reference: b}}\n", "reference 'b'"),
    ("methods: {a: {config: spec.yaml}}\nseeds: [-1]\n", "seeds"),
    ("methods: {a: {config: spec.yaml}}\ncolour: red\n", "unknown key"),
    # names become files under --out: nothing that leaves it or nests
    ("methods: {../../escaped: {config: spec.yaml}}\n", "method name '../../escaped'"),
    ("methods: {a/b: {config: spec.yaml}}\n", "method name 'a/b'"),
    ("name: ../../elsewhere\nmethods: {a: {config: spec.yaml}}\n", "name '../../elsewhere'"),
    ("methods: {a: {config: spec.yaml}}\nseeds: [1, 1]\n", "seed twice"),
    ("methods: {a: {config: spec.yaml}}\nseeds: [true]\n", "seeds"),
    ("methods: {a: {config: spec.yaml}}\npublished: {a: {ndcg@10: high}}\n", "published.a.ndcg@10 must be a number"),
    ("methods: {a: {config: spec.yaml}}\npublished_scale: lots\n", "'published_scale' must be a number"),
])
def test_bad_specs_are_clear_errors(tmp_path, body, message):
    path = tmp_path / "spec.yaml"
    path.write_text(body)
    with pytest.raises(TandemError, match=message):
        load_spec(path)


@pytest.mark.parametrize("edit, message", [
    (("metrics: [recall@10, ndcg@10]", "metrics: [recall@10, ndcg@7]"), "'ndcg@7'"),
    (("plot: {kind: bar, metric: ndcg@10}", "plot: {kind: bar, metric: nosuch@10}"), "'nosuch@10'"),
    (('"scheme.name=independent"]', '"scheme.name=independent", train.epochz=1]'), "train.epochz"),
])
def test_a_spec_mistake_is_found_before_anything_trains_or_is_written(edit, message, tmp_path, tiny_csv,  # noqa: F811
                                                                      capsys):
    """Every method's config and every reported metric is checked first: the last method's typo does not wait
    for the first method to train, and a refused command leaves no output directory."""
    spec = write_spec(tmp_path, tiny_config(tmp_path, tiny_csv))
    spec.write_text(spec.read_text().replace(*edit))
    out = tmp_path / "out"
    assert main(["experiment", str(spec), "--out", str(out), "--seeds", "1"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and not out.exists()


@pytest.mark.parametrize("argv, message", [
    (["--methods", ""], "--methods is empty"),
    (["--methods", ","], "--methods is empty"),
    (["--out", ""], "--out is empty"),
])
def test_empty_experiment_flags_are_refused(argv, message, tmp_path, tiny_csv, capsys):  # noqa: F811
    spec = write_spec(tmp_path, tiny_config(tmp_path, tiny_csv))
    assert main(["experiment", str(spec), *argv]) == 2
    assert message in capsys.readouterr().err
