"""pipeline/tune/ray_workarounds.py: each workaround still matches the Ray it works around.

These fail the day Ray changes what a workaround relies on (a file name, a log line, a logger's name, a hook); the
workaround is then either adapted or, if Ray now offers a public way, dropped. The version bound on `ray[tune]` in
pyproject.toml is the range these tests passed on.
"""

from __future__ import annotations

import inspect
import json
import logging
from pathlib import Path

import pytest

from pipeline.tune.ray_workarounds import (
    RESTORE_FAILED,
    RESTORE_LOGGER,
    STATE_GLOB,
    QuietSigterm,
    explain_restore_failure,
    quiet_sigterm,
    saved_trials,
)

# --------------------------------------------------------------------------- 1. Tune's saved experiment state


def test_tune_names_its_saved_state_as_assumed():
    from ray.tune.execution.tune_controller import TuneController

    assert TuneController.CKPT_FILE_TMPL.format("*") == STATE_GLOB


def test_saved_trials_reads_the_newest_state(tmp_path):
    assert saved_trials(tmp_path) == []  # no state yet
    old = {"trial_data": [[json.dumps({"trial_id": "a", "status": "RUNNING"}), "{}"]]}
    new = {"trial_data": [[json.dumps({"trial_id": "a", "status": "TERMINATED"}), "{}"], [{"status": "PENDING"}, {}]]}
    (tmp_path / "experiment_state-2026-01-01_00-00-00.json").write_text(json.dumps(old))
    (tmp_path / "experiment_state-2026-01-02_00-00-00.json").write_text(json.dumps(new))
    assert saved_trials(tmp_path) == [("a", "TERMINATED"), ("?", "PENDING")]
    (tmp_path / "experiment_state-2026-01-03_00-00-00.json").write_text("{not json")
    with pytest.raises(ValueError):
        saved_trials(tmp_path)


# --------------------------------------------------------------------------- 2. Tune's silent restart


def test_tune_logs_a_failed_restore_where_the_note_listens():
    from ray.tune.execution import tune_controller

    assert tune_controller.logger.name == RESTORE_LOGGER
    assert f'"{RESTORE_FAILED}.' in inspect.getsource(tune_controller.TuneController.__init__)


def test_a_failed_restore_is_explained_on_one_line_only_while_fitting(capsys):
    log = logging.getLogger(RESTORE_LOGGER)
    with explain_restore_failure("s"):
        try:
            raise KeyError("trainable_name")
        except KeyError:
            log.exception(f"{RESTORE_FAILED}.")
    log.error(f"{RESTORE_FAILED}.")  # after the sweep's fit: not ours to explain
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("[s]")]
    assert lines == [
        "[s] Tune could not restore the sweep's saved state (KeyError: 'trainable_name'); it starts the trials again "
        "(the runs of those that finished are kept, the others train again from epoch 1)"
    ]


# --------------------------------------------------------------------------- 3. Ray Train's per-report log line


def test_ray_train_still_logs_each_report_under_a_file_path():
    """If Ray names this logger `__name__` again, `logging.getLogger("ray.train")` covers it: drop the workaround."""
    from ray.train.v2._internal.execution import context

    assert context.logger.name == context.__file__
    assert "Reporting training result" in inspect.getsource(context)


# --------------------------------------------------------------------------- 4. a quiet SIGTERM in trial actors


def test_tune_mixes_the_trainables_mixins_into_its_actor_class():
    from ray.tune.trainable.function_trainable import FunctionTrainable, wrap_function

    @quiet_sigterm
    def trainable(config):
        pass

    mro = wrap_function(trainable).__mro__
    assert QuietSigterm in mro and mro.index(QuietSigterm) < mro.index(FunctionTrainable)


def test_a_ray_worker_still_raises_systemexit_on_sigterm():
    """What QuietSigterm replaces in a trial actor; if Ray's worker loop stops installing it, drop the workaround."""
    from ray._private.worker import Worker

    source = inspect.getsource(Worker.main_loop)
    assert "set_sigterm_handler" in source and "raise_sys_exit_with_custom_error_message" in source


# --------------------------------------------------------------------------- against a real Tune run


def _three_reports() -> object:
    """A trivial function trainable, defined here so that Ray pickles it by value (workers cannot import tests)."""

    @quiet_sigterm
    def three_reports(config, offset):
        from ray import tune

        for i in range(3):
            tune.report({"x": config["a"] * i + offset})

    return three_reports


def _fit(tuner) -> list:
    with explain_restore_failure("s"):
        return list(tuner.fit())


@pytest.mark.slow
def test_a_real_tune_state_reads_as_tune_reads_it_and_restores_as_assumed(tmp_path, ray_local, capsys):
    from ray import tune
    from ray.tune import ExperimentAnalysis

    trainable = tune.with_parameters(_three_reports(), offset=1)
    assert trainable.__mixins__ == (QuietSigterm,)  # kept by with_parameters: the actors exit quietly
    space = {"a": tune.grid_search([1, 2])}
    run_config = tune.RunConfig(name="e", storage_path=str(tmp_path), verbose=0)
    results = _fit(tune.Tuner(trainable, param_space=space, run_config=run_config))
    assert [r.error for r in results] == [None, None]
    tune_dir = tmp_path / "e"

    # 1. Our reading of the saved state agrees with Tune's public reader of it.
    public = [(t.trial_id, t.status) for t in ExperimentAnalysis(str(tune_dir)).trials]
    assert saved_trials(tune_dir) == public and {s for _, s in public} == {"TERMINATED"}

    # 2. A state Tune cannot restore: Tune logs the line the note listens to and starts over from the param_space.
    #    A state that lists no trial is one of them (why resume.why_not_restorable refuses it first).
    for broken in ("lists no trial", "not a trial"):
        state_file = sorted(Path(tune_dir).glob(STATE_GLOB))[-1]
        state = json.loads(state_file.read_text())
        if broken == "lists no trial":
            state["trial_data"] = []
        else:
            state["trial_data"][0][0] = "{}"
        state_file.write_text(json.dumps(state))
        restored = tune.Tuner.restore(str(tune_dir), trainable, param_space=space, resume_unfinished=True)
        results = _fit(restored)
        assert sorted(r.config["a"] for r in results) == [1, 2], broken
        assert "[s] Tune could not restore the sweep's saved state (" in capsys.readouterr().err, broken
