"""The library defaults are the settings stored by benchmarks/select_defaults.py (class-disjoint
validation on three digits two-view problems), and that stored choice is the best mean score."""
import json
from pathlib import Path

import numpy as np
import pytest

from geoalign.models import SSPC, LinearContrastive, QSMA, UniCode

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "select_defaults_results.json"
CLASSES = {"QSMA": QSMA, "LinearContrastive": LinearContrastive, "SSPC": SSPC, "UniCode": UniCode}


@pytest.fixture(scope="module")
def results():
    return json.loads(RESULTS.read_text())


#: searched but not adopted: UniCode's grid (dim 32/64 x 64/256 codes) did not contain its
#: previous defaults (dim 256, 400 codes), so validation never compared the two (see the report
#: in benchmarks/select_defaults.py); CFSA was not searched
NOT_ADOPTED = {"UniCode"}
SELECTED = sorted(m for m in CLASSES if m in json.loads(RESULTS.read_text())["methods"] and m not in NOT_ADOPTED)


def test_selection_covers_the_main_models():
    assert {"QSMA", "LinearContrastive"} <= set(SELECTED)


@pytest.mark.parametrize("method", SELECTED)
def test_defaults_are_the_validated_choice(results, method):
    entry = results["methods"][method]
    assert set(entry["per_problem"]) == {"digits", "digits_tb", "digits_hog"}
    scores = [c["score"] for c in entry["overall_scores"]]
    best = entry["overall_scores"][int(np.argmax(scores))]
    assert entry["chosen"] == {**entry["fixed"], **best["params"]}
    # the overall score is the mean of the three problems' validation scores
    for cand in entry["overall_scores"]:
        per = [next(c["score"] for c in entry["per_problem"][p]["candidates"] if c["params"] == cand["params"])
               for p in entry["per_problem"]]
        assert cand["score"] == pytest.approx(np.mean(per))
    defaults = CLASSES[method]().get_params()
    for k, v in entry["chosen"].items():
        assert defaults[k] == v, (method, k, defaults[k], v)


def test_labels_are_on_by_default_only_where_they_never_hurt(results):
    """Passing y must not lower held-out-class retrieval: a default with use_labels=True needs
    labels to score at least as well as no labels on every problem of the validation."""
    checked = 0
    for method in SELECTED:
        cls = CLASSES[method]
        per_problem = results["methods"][method].get("labels_validation")
        if per_problem is None:
            continue
        checked += 1
        if cls().use_labels:
            assert all(v["best_with_labels"] >= v["best_without_labels"] for v in per_problem.values()), method
    assert checked >= 1
    qsma = results["methods"]["QSMA"]["labels_validation"]
    assert all(v["best_without_labels"] > v["best_with_labels"] for v in qsma.values())
    assert QSMA().use_labels is False
