"""The library defaults are the settings stored by benchmarks/select_defaults.py (class-disjoint
validation on three digits two-view problems), and that stored choice is the best mean score."""
import json
from pathlib import Path

import numpy as np
import pytest

from geoalign.models import CFSA, SSPC, LinearContrastive, QSMA, UniCode

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "select_defaults_results.json"
CLASSES = {"QSMA": QSMA, "LinearContrastive": LinearContrastive, "SSPC": SSPC, "UniCode": UniCode,
           "CFSA": CFSA}


@pytest.fixture(scope="module")
def results():
    return json.loads(RESULTS.read_text())


SELECTED = sorted(m for m in CLASSES if m in json.loads(RESULTS.read_text())["methods"])


def test_selection_covers_the_main_models():
    assert set(CLASSES) <= set(SELECTED)


@pytest.mark.parametrize("method", ["UniCode", "CFSA"])
def test_the_grid_held_the_previous_defaults(results, method):
    """A selection that keeps or replaces the defaults must have compared them: the previous
    defaults are one candidate of the grid (with the fixed parameters)."""
    entry = results["methods"][method]
    cls = CLASSES[method]
    previous = cls(**entry["previous_defaults"]).get_params()
    candidates = [cls(**{**entry["fixed"], **c["params"]}).get_params() for c in entry["overall_scores"]]
    assert previous in candidates and entry["previous_is_candidate"]
    assert len(candidates) >= 4 and not entry["quick"] and len(entry["seeds"]) >= 5


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
