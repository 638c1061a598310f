"""Contextual calibration maths."""

from __future__ import annotations

import pytest

from promptlearning.methods.calibration import calibrate, content_free_distribution


def test_calibrating_the_content_free_distribution_gives_uniform():
    cf = {"a": 0.7, "b": 0.2, "c": 0.1}
    assert calibrate(cf, cf) == pytest.approx({"a": 1 / 3, "b": 1 / 3, "c": 1 / 3})


def test_calibration_divides_by_the_bias_and_renormalises():
    # Zhao et al. eq.: q ∝ diag(p_cf)^-1 p
    calibrated = calibrate({"pos": 0.6, "neg": 0.4}, {"pos": 0.8, "neg": 0.2})
    expected_pos = (0.6 / 0.8) / (0.6 / 0.8 + 0.4 / 0.2)
    assert calibrated["pos"] == pytest.approx(expected_pos)
    assert calibrated["neg"] == pytest.approx(1 - expected_pos)
    assert max(calibrated, key=calibrated.get) == "neg", "calibration flips a prediction the bias explains"


def test_content_free_distribution_is_the_renormalised_mean():
    mean = content_free_distribution([{"a": 0.9, "b": 0.1}, {"a": 0.5, "b": 0.5}, {"a": 0.7, "b": 0.3}])
    assert mean == pytest.approx({"a": 0.7, "b": 0.3})
