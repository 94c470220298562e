"""Fast form of benchmarks/qsma_evidence.py: planted pair and shared-subspace recovery."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import qsma_evidence  # noqa: E402


def test_planted_pairs_and_shared_subspace_recovered():
    res = qsma_evidence.planted_evidence(n_train=400, n_test=100, max_epochs=60)
    assert res["precision"] >= 0.95 and res["recall"] >= 0.95, res
    # the embedding responds to the shared directions, not to view a's private ones
    # (an isotropic map would give 6/24 = 0.25 shared and 3/24 = 0.125 private)
    assert res["shared_energy_fraction"] > 0.5, res
    assert res["private_energy_fraction"] < 0.02, res
