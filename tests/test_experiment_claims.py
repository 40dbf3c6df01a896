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
    assert weak[5] == "**reproduces in direction**: significant, smaller than published (outside the 95 % interval)"
    low, high = stats.ttest_rel(BASE * 1.05, BASE).confidence_interval(0.95)  # scipy's own interval
    assert weak[2] == f"[{100 * low / BASE.mean():+.1f}, {100 * high / BASE.mean():+.1f}] %"
    assert rows["`same` > `independent`"][1:] == ["+0.0 %", "[+0.0, +0.0] %", "1.000 / 1.000", "1",
                                                   "**does not reproduce**: no gain"]
    assert rows["`worse` > `independent`"][5] == "**does not reproduce**: significantly the other way"
    assert rows["`noisy` > `independent`"][5] == "direction only: not significant"
    assert rows["`missing` > `independent`"][4:] == ["0", "not run yet"]
    retrievers = rows["`weak` > `independent` (retrievers)"]  # no published Δ for a named stage
    assert retrievers[0] == "" and retrievers[1] == f"{100 * (0.95 / 0.9 - 1):+.1f} %"
    assert retrievers[5] == "**reproduces**"
    # a two-stage method's final stage (pipeline) against a retriever alone: +11.1 % on every user
    assert rows["`independent` > `retriever`"][1] == "+11.1 %" and rows["`independent` > `retriever`"][5] == "**reproduces**"
    assert rows["`retriever` > `independent` (pipelines)"][5] == "undefined: `retriever` has no pipeline stage"


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
    with pytest.raises(TandemError, match=None) as caught:
        load_spec(spec_file(tmp_path, claims))
    assert message in str(caught.value)
