"""A spec's claims (the paper's findings) checked in table.md: each verdict on per-user data built to give it."""
import json

import numpy as np
import pytest
from scipy import stats

from tandem.errors import TandemError
from tandem.experiments.runner import write_per_user
from tandem.experiments.spec import load_spec
from tandem.experiments.tables import finished_runs, markdown

USERS = 400
BASE = np.linspace(0.1, 0.3, USERS)  # the reference's per-user NDCG@10


def write_run(out, method: str, stages: dict[str, np.ndarray], seed: int = 1) -> None:
    """A finished run as the runner leaves it: report.json and per-user metrics."""
    run = out / "runs" / f"{method}-s{seed}"
    run.mkdir(parents=True)
    test = {stage: {"ndcg@10": float(values.mean())} for stage, values in stages.items()}
    report = {"test": test if len(test) > 1 else test["retriever"], "valid": {}, "epochs_run": 3, "best_epoch": 2}
    (run / "report.json").write_text(json.dumps(report))
    write_per_user(out / "per_user" / f"{method}-s{seed}.csv", np.arange(USERS),
                   {stage: {"ndcg@10": values} for stage, values in stages.items()})


def spec_file(tmp_path, claims: str):
    (tmp_path / "c.yaml").write_text("task: general\n")
    methods = "".join(f"  {name}: {{config: c.yaml}}\n" for name in
                      ("retriever", "independent", "strong", "weak", "same", "worse", "noisy", "missing"))
    path = tmp_path / "spec.yaml"
    path.write_text(f"name: claims\nreference: independent\nmetrics: [ndcg@10]\nmethods:\n{methods}"
                    f"published:\n  strong: {{ndcg@10: 12.0}}\n  weak: {{ndcg@10: 12.0}}\n  independent: {{ndcg@10: 10.0}}\n"
                    f"claims:\n{claims}")
    return path


def claim_rows(table: str) -> dict[str, list[str]]:
    """{claim cell: the other cells} of the claims table."""
    rows = {}
    for line in table.split("## The paper's findings, checked", 1)[1].splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("| `"):
            rows[cells[0]] = cells[1:]
    return rows


def test_each_verdict_from_data_built_for_it(tmp_path):
    out = tmp_path / "out"
    two_stage = lambda pipeline, retriever: {"pipeline": pipeline, "retriever": retriever}  # noqa: E731
    write_run(out, "retriever", {"retriever": BASE * 0.9})
    write_run(out, "independent", two_stage(BASE, BASE * 0.9))
    write_run(out, "strong", two_stage(BASE * 1.25, BASE * 0.9))  # +25 % on every user
    write_run(out, "weak", two_stage(BASE * 1.05, BASE * 0.95))  # +5 % on every user; retriever +5.6 %
    write_run(out, "same", two_stage(BASE.copy(), BASE * 0.9))  # identical
    write_run(out, "worse", two_stage(BASE * 0.8, BASE * 0.9))  # -20 % on every user
    noisy = BASE.copy()
    noisy[:5] += [0.002, -0.001, 0.002, -0.001, 0.002]  # a gain on average, 5 changed users of 400
    write_run(out, "noisy", two_stage(noisy, BASE * 0.9))
    claims = "".join(f"  - {entry}\n" for entry in (
        "{method: strong, over: independent, margin: 0.10}",
        "{method: weak, over: independent, margin: 0.10}",
        "{method: weak, over: independent}",
        "{method: same, over: independent}",
        "{method: worse, over: independent}",
        "{method: noisy, over: independent}",
        "{method: missing, over: independent}",
        "{method: weak, over: independent, stage: retriever}",
        "{method: independent, over: retriever}",
        "{method: retriever, over: independent, stage: pipeline}",
    ))
    spec = load_spec(spec_file(tmp_path, claims))
    rows = claim_rows(markdown(spec, out, finished_runs(spec, out)))
    # cells: published Δ, measured Δ, 95 % interval, p (W / t), seeds, verdict
    strong = rows["`strong` > `independent` by ≥ 10 %"]
    assert strong[0] == "+20.0 %"  # published 12.0 against 10.0: below the measured +25 %
    assert strong[1] == "+25.0 %" and strong[4] == "1" and strong[5] == "**reproduces**"
    assert rows["`weak` > `independent` by ≥ 10 %"][5] == "direction only: significant, below the claimed 10 %"
    weak = rows["`weak` > `independent`"]  # +5 % measured, +20 % published: significant but smaller
    assert weak[:2] == ["+20.0 %", "+5.0 %"]
    assert weak[5] == "**reproduces, smaller than published** (outside the 95 % interval)"
    low, high = stats.ttest_rel(BASE * 1.05, BASE).confidence_interval(0.95)  # scipy's own interval
    assert weak[2] == f"[{100 * low / BASE.mean():+.1f}, {100 * high / BASE.mean():+.1f}] %"
    assert rows["`same` > `independent`"][1:] == ["+0.0 %", "[+0.0, +0.0] %", "1.000 / 1.000", "1",
                                                   "**does not reproduce**: no gain"]
    assert rows["`worse` > `independent`"][5] == "**does not reproduce**: significantly the other way"
    assert rows["`noisy` > `independent`"][5] == "direction only: not significant"
    assert rows["`missing` > `independent`"][4:] == ["0", "not run yet: `missing`"]
    retrievers = rows["`weak` > `independent` (retrievers)"]  # no published Δ for a named stage
    assert retrievers[0] == "" and retrievers[1] == f"{100 * (0.95 / 0.9 - 1):+.1f} %"
    assert retrievers[5] == "**reproduces**"
    # a two-stage method's final stage (pipeline) against a retriever alone: +11.1 % on every user
    assert rows["`independent` > `retriever`"][1] == "+11.1 %" and rows["`independent` > `retriever`"][5] == "**reproduces**"
    assert rows["`retriever` > `independent` (pipelines)"][5] == "undefined: `retriever` without a pipeline stage"


@pytest.mark.parametrize("claims, message", [
    ("  - {method: corr, over: independent}\n", "claims[0]: method 'corr' is not one of the methods"),
    ("  - {method: strong, over: strong}\n", "cannot be claimed to beat itself"),
    ("  - {method: strong, over: independent, margin: -0.1}\n", "margin must be a relative gain in [0, 10)"),
    ("  - {method: strong, over: independent, margin: yes}\n", "claims[0].margin must be a number"),
    ("  - {method: strong, over: independent, stage: ranker}\n", "stage must be one of ['retriever', 'pipeline']"),
    ("  - {method: strong, by: independent}\n", "must be {method: NAME, over: NAME}"),
    ("  strong: independent\n", "'claims' must be a list"),
])
def test_bad_claims_are_refused_with_the_key(tmp_path, claims, message):
    with pytest.raises(TandemError) as caught:
        load_spec(spec_file(tmp_path, claims))
    assert message in str(caught.value)


def test_mean_and_most_users_disagreeing_is_not_a_reproduction(tmp_path):
    """20 users gain 0.1, 380 lose 0.002: the mean rises (+1.5 %) while most users fall, so the two-sided
    Wilcoxon p is tiny for the *fall*; the claim of a gain must not pass."""
    out = tmp_path / "out"
    mixed = BASE.copy()
    mixed[:20] += 0.1
    mixed[20:] -= 0.002
    write_run(out, "independent", {"pipeline": BASE, "retriever": BASE * 0.9})
    write_run(out, "weak", {"pipeline": mixed, "retriever": BASE * 0.9})
    spec = load_spec(spec_file(tmp_path, "  - {method: weak, over: independent}\n"))
    row = claim_rows(markdown(spec, out, finished_runs(spec, out)))["`weak` > `independent`"]
    assert row[1] == f"{100 * (mixed.mean() / BASE.mean() - 1):+.1f} %" and row[1].startswith("+")
    assert stats.wilcoxon(mixed, BASE, alternative="less").pvalue < 1e-10  # most users fall
    assert row[5] == "mixed: the mean and most users move in opposite directions"


def test_seeds_are_averaged_per_user_before_the_paired_test(tmp_path):
    """Two seeds of 400 users: the p-values are those of the 400 per-user seed means (scipy on numpy means), not of
    800 pooled rows; seeds without a partner and runs without a common seed say so."""
    out = tmp_path / "out"
    rng = np.random.default_rng(0)
    runs = {}
    for seed in (1, 2):
        runs[seed] = BASE + rng.normal(0, 0.05, USERS), BASE + 0.004 + rng.normal(0, 0.05, USERS)
        write_run(out, "independent", {"pipeline": runs[seed][0], "retriever": BASE}, seed=seed)
        write_run(out, "weak", {"pipeline": runs[seed][1], "retriever": BASE}, seed=seed)
    write_run(out, "same", {"pipeline": BASE, "retriever": BASE}, seed=3)
    spec = load_spec(spec_file(tmp_path, "  - {method: weak, over: independent}\n  - {method: same, over: weak}\n"))
    table = markdown(spec, out, finished_runs(spec, out))
    row = claim_rows(table)["`weak` > `independent`"]
    mine, theirs = (runs[1][1] + runs[2][1]) / 2, (runs[1][0] + runs[2][0]) / 2
    expected = (stats.wilcoxon(mine, theirs).pvalue, stats.ttest_rel(mine, theirs).pvalue)
    assert row[3] == " / ".join(f"{p:.1e}" if p < 1e-3 else f"{p:.3f}" for p in expected) and row[4] == "2"
    pooled = stats.wilcoxon(np.concatenate([runs[1][1], runs[2][1]]), np.concatenate([runs[1][0], runs[2][0]]))
    assert row[3].split(" / ")[0] != (f"{pooled.pvalue:.1e}" if pooled.pvalue < 1e-3 else f"{pooled.pvalue:.3f}")
    assert claim_rows(table)["`same` > `weak`"][4:] == ["0", "no seed in common (`same` [3], `weak` [1, 2])"]


def test_seeds_evaluating_other_users_cannot_be_averaged(tmp_path):
    out = tmp_path / "out"
    for seed in (1, 2):
        write_run(out, "independent", {"pipeline": BASE, "retriever": BASE}, seed=seed)
        write_run(out, "weak", {"pipeline": BASE * 1.1, "retriever": BASE}, seed=seed)
    path = out / "per_user" / "weak-s2.csv"
    text = path.read_text().splitlines()
    header, first = text[0], text[1].split(",")
    first[1] = "999"  # row 0 of seed 2 is another user
    path.write_text("\n".join([header, ",".join(first), *text[2:]]) + "\n")
    spec = load_spec(spec_file(tmp_path, "  - {method: weak, over: independent}\n"))
    with pytest.raises(TandemError, match="evaluate different users row by row"):
        markdown(spec, out, finished_runs(spec, out))
