"""diagnose_run: the windows' verdicts on processes with known answers (a rotating OU process is
out of equilibrium, a reversible one is not, a random walk is not stationary, and a run that
changes regime changes verdict), each window's test equal to the test on the same rows read
directly, the panels' notes, a diverged or frozen run, and a record that grows while training."""

import numpy as np
import pytest

import sgdscope as sg
from sgdscope.monitor import Panel

from ..trajectory._analysis_processes import brownian, rotated_ou
from ._runs import TinyRun, monitored_run, record_array

OUT, NONE, NOT_STATIONARY = (s.value for s in sg.analysis.EquilibriumStatus)


@pytest.mark.parametrize(
    "name, x, expected",
    [
        ("rotating OU", rotated_ou(1.0, 1200, seed=1)[0], {OUT}),
        ("reversible OU", rotated_ou(0.0, 1200, seed=2)[0], {NONE}),
        ("random walk", brownian(1200, 2, seed=3), {NOT_STATIONARY}),
    ],
)
def test_windows_of_processes_with_known_answers(tmp_path, name, x, expected):
    run = sg.diagnose_run(record_array(tmp_path / "r", x), window=400, n_surrogates=49)
    assert [(w.start, w.stop) for w in run.windows] == [(a, a + 400) for a in range(0, 801, 200)]
    assert {w.status for w in run.windows} == expected, name
    assert [(w.first_step, w.last_step) for w in run.windows] == [
        (a + 1, a + 400) for a in range(0, 801, 200)
    ]


def test_a_run_that_settles_changes_verdict_along_its_windows(tmp_path):
    """A random walk, then a rotating stationary process: the windows inside the first part are
    not testable, those inside the second are out of equilibrium."""
    walk = brownian(600, 2, seed=4) * 0.05
    cycle = rotated_ou(1.0, 600, seed=5)[0] + walk[-1]
    run = sg.diagnose_run(record_array(tmp_path / "r", np.vstack([walk, cycle])), window=300,
                          stride=150, n_surrogates=49)  # fmt: skip
    status = {(w.start, w.stop): w.status for w in run.windows}
    assert status[(0, 300)] == status[(300, 600)] == NOT_STATIONARY
    assert status[(600, 900)] == status[(900, 1200)] == OUT
    assert run.verdict_counts()[OUT] >= 2


def test_each_window_and_panel_is_the_analysis_of_the_same_rows(tmp_path):
    """The diagnosis reads the rows and coordinates it says it used: the same analyses on the
    array itself (float32, as recorded) give the same results."""
    rng = np.random.default_rng(0)
    x = np.cumsum(rng.standard_normal((650, 6)), axis=0) * 0.1 + rotated_ou(0.8, 650, 6)[0][:, :1]
    run = sg.diagnose_run(record_array(tmp_path / "r", x), max_coordinates=4, n_surrogates=19,
                          seed=3, transient=0.3)  # fmt: skip
    rows = x.astype(np.float32).astype(np.float64)[:, run.coordinates]
    assert run.coordinates.size == 4 and len(set(run.coordinates)) == 4
    assert run.settings["window"] == 200 and run.settings["stride"] == 100
    # aligned on the last record: starts 450, 350, ..., 50
    assert [w.start for w in run.windows] == [50, 150, 250, 350, 450] and run.windows[
        -1
    ].stop == 650
    for w in run.windows:
        direct = sg.analysis.equilibrium_test(rows[w.start : w.stop], n_surrogates=19, seed=3)
        assert (w.test.statistic, w.test.p_value) == (direct.statistic, direct.p_value)
    assert run.span == (195, 650)
    span = rows[195:650]
    np.testing.assert_array_equal(
        run.power_spectrum.mean, sg.analysis.power_spectrum(span, seed=3).mean
    )
    np.testing.assert_array_equal(run.autocorrelation.mean, sg.analysis.autocorrelation(span).mean)
    assert run.msd.exponent == sg.analysis.msd(span, seed=3).exponent
    np.testing.assert_array_equal(run.trajectory.scalars["loss"], x[:, 0].astype(np.float64))


def test_a_plain_record_says_what_it_lacks(tmp_path):
    run = sg.diagnose_run(record_array(tmp_path / "r", brownian(300, 3, seed=1)), n_surrogates=19)
    assert run.record is None and run.overlap is None
    assert "plain trajectory record" in run.notes[Panel.NOISE]
    assert "not recorded per step" in run.notes[Panel.TEMPERATURE]
    assert "neither scalars['grad_norm']" in run.notes[Panel.GRADIENT_NORM]
    assert Panel.LOSS not in run.notes and run.gradient_norm is None


def test_short_records_lose_their_windows_then_their_spectra(tmp_path):
    run = sg.diagnose_run(record_array(tmp_path / "a", brownian(150, 3, seed=1)))
    assert run.windows == () and "needs a window of at least 200" in run.notes[Panel.WINDOWS]
    assert run.power_spectrum is not None
    run = sg.diagnose_run(record_array(tmp_path / "b", brownian(20, 3, seed=1)))
    assert run.power_spectrum is None and run.msd is None
    assert "at least 16 are needed" in run.notes[Panel.SPECTRUM]


def test_a_diverged_run_is_analysed_up_to_its_first_non_finite_record(tmp_path):
    x = rotated_ou(1.0, 500, seed=2)[0]
    x[430:, 1] = np.inf
    with pytest.warns(RuntimeWarning, match="hold NaN or inf"):
        record_array(tmp_path / "r", x)
    run = sg.diagnose_run(tmp_path / "r", n_surrogates=19)
    assert run.usable == 430 and run.windows[-1].stop == 430
    assert "not finite from step 431 on" in run.notes[Panel.TRAJECTORY]


def test_frozen_weights_are_left_out(tmp_path):
    x = np.column_stack([rotated_ou(1.0, 400, seed=3)[0], np.full(400, 0.5)])
    run = sg.diagnose_run(record_array(tmp_path / "r", x), n_surrogates=19)
    assert [w.n_coordinates for w in run.windows] == [2] * 3
    assert all(w.test is not None for w in run.windows)
    x = np.column_stack([np.full(400, 0.5), np.full(400, 0.5)])
    run = sg.diagnose_run(record_array(tmp_path / "s", x), n_surrogates=19)
    assert run.windows[0].test is None and "the test needs 2" in run.windows[0].problem
    assert "no single weight varies" in run.notes[Panel.SPECTRUM]


def test_a_monitored_run_has_its_overlaps_and_noise(tmp_path):
    rec = sg.load_monitor(monitored_run(tmp_path / "m", 260, measure_every=10))
    run = sg.diagnose_run(tmp_path / "m", max_overlaps=5, n_surrogates=19)
    assert len(rec) == 26 and run.overlap_measurements.tolist() == [0, 6, 12, 19, 25]
    np.testing.assert_array_equal(run.overlap, rec.overlaps([0, 6, 12, 19, 25]))
    assert "5 of the 26 measurements" in run.notes[Panel.OVERLAP]
    assert Panel.NOISE not in run.notes and Panel.TEMPERATURE not in run.notes
    assert run.gradient_norm.dim == 83  # the model's parameters, normalising ‖∇f‖/√d
    np.testing.assert_allclose(run.gradient_norm.value * np.sqrt(83),
                               rec.trajectory.scalars["grad_norm"])  # fmt: skip


def test_a_record_that_grows_while_training_is_read_as_far_as_committed(tmp_path):
    training = TinyRun(tmp_path / "m", measure_every=100).train(250)
    first = sg.diagnose_run(tmp_path / "m", n_surrogates=19)
    assert not first.trajectory.complete and len(first.trajectory) == 250
    assert first.record.steps.tolist() == [100, 200] and len(first.windows) == 1
    training.train(250)
    second = sg.diagnose_run(tmp_path / "m", n_surrogates=19)
    assert len(second.trajectory) == 500 and second.record.steps.tolist() == [
        100,
        200,
        300,
        400,
        500,
    ]
    assert second.windows[-1].last_step == 500 and second.settings["window"] == 200
    training.close()
    assert sg.diagnose_run(tmp_path / "m", n_surrogates=19).trajectory.complete


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"window": 100}, r"'window' parameter of diagnose_run must be an int in \[200, inf\]"),
        ({"stride": 0}, r"'stride' parameter of diagnose_run must be an int in \[1, inf\]"),
        ({"transient": 1.0}, r"'transient' parameter of diagnose_run"),
        ({"max_coordinates": 1}, r"'max_coordinates' parameter of diagnose_run"),
        ({"max_snapshots": 8}, r"'max_snapshots' parameter of diagnose_run"),
        ({"max_overlaps": 1}, r"'max_overlaps' parameter of diagnose_run"),
        ({"n_surrogates": 5}, r"'n_surrogates' parameter of diagnose_run"),
        ({"alpha": 0.0}, r"'alpha' parameter of diagnose_run"),
        ({"seed": -1}, r"'seed' parameter of diagnose_run"),
    ],
)
def test_bad_arguments_are_refused_before_reading(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        sg.diagnose_run(tmp_path / "nothing-here", **kwargs)


def test_not_a_record(tmp_path):
    with pytest.raises(FileNotFoundError):
        sg.diagnose_run(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(sg.TrajectoryFormatError, match="not a trajectory"):
        sg.diagnose_run(tmp_path / "empty")
