"""fer_pipeline.runner.throughput: sizing a schedule to the time a machine is lent for."""

from __future__ import annotations

import pytest

from fer_pipeline.runner.throughput import epochs_that_fit


def test_epochs_that_fit_fill_the_time_and_never_exceed_the_schedule():
    assert epochs_that_fit(100, 10, wanted=60) == 10
    assert epochs_that_fit(99.9, 10, wanted=60) == 9  # whole epochs only
    assert epochs_that_fit(10_000, 10, wanted=60) == 60  # never more than configured
    assert epochs_that_fit(100, 10, wanted=60, runs=4, fixed_seconds=20) == 2  # 80 s over 4 runs of 10 s epochs


def test_at_least_one_epoch_even_when_nothing_fits():
    assert epochs_that_fit(5, 10, wanted=60) == 1
    assert epochs_that_fit(-30, 10, wanted=3, fixed_seconds=100) == 1


@pytest.mark.parametrize(("epoch_seconds", "runs", "wanted"), [(0, 1, 5), (10, 0, 5), (10, 1, 0)])
def test_impossible_inputs_are_refused(epoch_seconds, runs, wanted):
    with pytest.raises(ValueError, match="epochs_that_fit"):
        epochs_that_fit(100, epoch_seconds, wanted, runs=runs)
