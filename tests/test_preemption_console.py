"""The stop flag's lifetime, the disk-error line, and the noise filter (unit level; the CLI paths are in
tests/test_reliability.py)."""

import errno
import logging
import os
import signal
import sys
import time

import pytest

from preciseinv import console, preemption


def test_a_stop_request_lives_only_inside_graceful():
    with preemption.graceful():
        os.kill(os.getpid(), signal.SIGTERM)
        assert preemption.requested() == signal.SIGTERM
        with pytest.raises(preemption.Interrupted) as stop:
            preemption.check()
        assert stop.value.exit_status == 143
    preemption.check()  # the API, a notebook or the next run in this process is not stopped by an old signal
    assert preemption.requested() is None
    assert signal.getsignal(signal.SIGTERM) is not preemption._handler


def test_a_second_ctrl_c_stops_at_once():
    with preemption.graceful():
        os.kill(os.getpid(), signal.SIGINT)
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert preemption.Interrupted(signal.SIGINT).exit_status == 130


@pytest.fixture
def fresh_sigint():
    """SIGINT handled as in a fresh interpreter for the test, whatever an earlier test in this worker left."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


def test_an_early_ctrl_c_stops_the_command_when_its_own_code_begins(fresh_sigint):
    reached = []
    with pytest.raises(SystemExit) as exit_:
        with console.interruptible():
            os.kill(os.getpid(), signal.SIGINT)  # importing and composing (libraries that may swallow it): remembered
            reached.append("held back")
            preemption.command_started()
            raise AssertionError("the command went on after a Ctrl-C")
    assert exit_.value.code == 130 and reached == ["held back"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the previous handler is back
    with pytest.raises(SystemExit):
        with console.interruptible():
            os.kill(os.getpid(), signal.SIGINT)
            reached.append("held back again")
            with pytest.raises(KeyboardInterrupt):
                os.kill(os.getpid(), signal.SIGINT)  # a second Ctrl-C: at once
            raise KeyboardInterrupt
    assert reached == ["held back", "held back again"]
    with console.interruptible():  # a later command in this process is not stopped by an old Ctrl-C
        preemption.command_started()
        with preemption.graceful():
            assert preemption.requested() is None


def test_a_ctrl_c_a_library_swallowed_still_stops_the_run():
    with pytest.raises(SystemExit) as exit_:
        with console.interruptible():
            preemption.command_started()
            try:  # a library's bare except while the model loads
                os.kill(os.getpid(), signal.SIGINT)  # the command's own code: raised at once
                raise AssertionError("a Ctrl-C after the start was not raised at once")
            except KeyboardInterrupt:
                pass
            with preemption.graceful():
                raise AssertionError("the run started after a Ctrl-C")
    assert exit_.value.code == 130


def test_a_ctrl_c_inside_an_import_waits_for_the_import_to_finish(fresh_sigint, tmp_path, monkeypatch):
    """After the command started, a first Ctrl-C that lands inside an import is not raised there (a library left
    half initialised breaks later imports, and CPython reports such an exit as a death by SIGINT): the import
    completes, and the command stops right after it, with the one line and status 130."""
    (tmp_path / "slow_library.py").write_text("import os, signal\nos.kill(os.getpid(), signal.SIGINT)\nLOADED = True\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    reached = []
    with pytest.raises(SystemExit) as exit_:
        with console.interruptible():
            preemption.command_started()
            import slow_library

            reached.append(slow_library.LOADED)  # the import ran to its end
            start = time.monotonic()
            time.sleep(5)  # the command's own work: stopped within the timer's 50 ms
            raise AssertionError("the command went on after a Ctrl-C")
    assert exit_.value.code == 130 and reached == [True] and time.monotonic() - start < 2
    assert signal.getsignal(signal.SIGALRM) is signal.SIG_DFL and signal.getitimer(signal.ITIMER_REAL)[0] == 0


def test_disk_errors_name_the_folder_that_failed(tmp_path):
    out = tmp_path / "out"
    inside = OSError(errno.ENOSPC, "No space left on device", str(out / "latents" / "a.safetensors"))
    line = console.disk_error(inside, out)
    assert str(out) in line and "free space" in line and "rerun the same command" in line
    cache = OSError(errno.EROFS, "Read-only file system", "/root/.cache/huggingface/x")
    line = console.disk_error(cache, out)
    assert "/root/.cache/huggingface/x" in line and "outside output_dir" in line and "make it writable" in line
    assert console.disk_error(OSError(errno.ENOENT, "gone"), out) is None


def test_a_mistake_leaves_no_folder_but_an_earlier_runs_folder_stays(tmp_path, monkeypatch):
    """A command stopped by a mistake removes the output_dir Hydra made for it (only ``.hydra/`` inside); a folder
    with anything else in it (an earlier run's outputs) is kept whole, ``.hydra/`` included; a rank other than the
    first leaves the shared folder to it."""
    fresh, earlier, shared = tmp_path / "fresh", tmp_path / "earlier", tmp_path / "shared"
    (shared / ".hydra").mkdir(parents=True)
    monkeypatch.setenv("RANK", "1")
    console.drop_unused_run_dir(shared)
    monkeypatch.delenv("RANK")
    assert (shared / ".hydra").is_dir()
    for folder in (fresh, earlier):
        (folder / ".hydra").mkdir(parents=True)
        (folder / ".hydra" / "config.yaml").write_text("seed: 0\n")
    (earlier / "manifest.jsonl").write_text("{}\n")
    console.drop_unused_run_dir(fresh)
    console.drop_unused_run_dir(earlier)
    console.drop_unused_run_dir(tmp_path / "never-made")  # nothing there: nothing to do
    assert not fresh.exists() and (earlier / ".hydra" / "config.yaml").is_file()
    day = tmp_path / "outputs" / "2026-12-07"  # Hydra's default outputs/<date>/<time>/: the date folder goes too
    (day / "00-12-13" / ".hydra").mkdir(parents=True)
    (day / "00-12-13" / ".lock").write_text("")  # a lock the refused run took and let go
    console.drop_unused_run_dir(day / "00-12-13")
    assert not day.exists() and (tmp_path / "outputs").is_dir()
    mine = tmp_path / "runs" / "2026-12-07"  # output_dir=runs/2026-12-07/exp: the user's own dated folder stays
    (mine / "exp" / ".hydra").mkdir(parents=True)
    console.drop_unused_run_dir(mine / "exp")
    assert not (mine / "exp").exists() and mine.is_dir()


def test_quiet_drops_lightning_chatter_but_not_what_asks_for_action(caplog):
    logger = logging.getLogger("lightning.pytorch.test")
    handler = logging.Handler()
    seen = []
    handler.emit = lambda record: seen.append(record.getMessage())
    # beside Lightning's own handler: its parent "lightning" stops seeing these records when lightning.pytorch was
    # imported before any root handler existed (it then sets propagate=False on itself)
    logging.getLogger("lightning.pytorch").addHandler(handler)
    try:
        with console.quiet(verbose=False):
            logger.warning("GPU available: False, used: False")
            logger.warning("Child process with PID 7 terminated with code -9. Forcefully terminating all other processes")
        logger.warning("GPU available: True")  # after the run: untouched
    finally:
        logging.getLogger("lightning.pytorch").removeHandler(handler)
    assert seen == ["Child process with PID 7 terminated with code -9. Forcefully terminating all other processes",
                    "GPU available: True"]


def test_the_summary_table_shows_the_run_pace():
    summary = {"n": 40, "n_failed": 1, "psnr_mean": 25.127, "ssim_mean": 0.71234, "lpips_mean": None,
               "converged_fraction": 0.975, "cost_mean": 72.0, "seconds_per_image": 0.2, "peak_memory_mb": 512.4}
    head, values = console.summary_table(summary, {"steady_images_per_second": 6.2345}).splitlines()
    assert head.split() == ["images", "failed", "PSNR", "SSIM", "LPIPS", "converged", "cost/image", "s/image", "peak",
                            "MB", "img/s"]
    assert values.split() == ["40", "1", "25.13", "0.7123", "-", "98%", "72", "0.200", "512", "6.23"]
    assert console.summary_table(summary).split()[-1] == "-"  # one batch a rank (or no run.json): no steady pace


def test_an_exact_method_reads_exact_not_a_converged_fraction():
    """EDICT, BDIA, BELM (and the ceiling) have no eta to meet: their plain sampler's residual says nothing."""
    from preciseinv.methods import EXACT_METHODS

    assert EXACT_METHODS == ("edict", "bdia", "belm", "ceiling")
    summary = {"n": 4, "converged_fraction": 0.0, "config": {"method": {"_target_": "preciseinv.methods.BELM"}}}
    assert console.summary_table(summary).splitlines()[1].split()[5] == "exact"
    summary["config"]["method"]["_target_"] = "preciseinv.methods.DDIMInversion"
    assert console.summary_table(summary).splitlines()[1].split()[5] == "0%"


def test_the_header_names_what_loads_and_the_configs_as_the_user_spells_them():
    """The header's method and solver are the config names (``ddim``, ``fixed_point``, not the class names), and a
    ``model.path`` shows beside the preset it overrides."""
    from hydra import compose, initialize_config_module

    def header(*overrides):
        with initialize_config_module("configs", version_base=None):
            return console.header(compose("fit", overrides=[*overrides, "output_dir=out"]), 4, 1)

    assert header().startswith("preciseinv: model=mini method=preciseinv solver=hybrid sampler=auto T=2")
    assert "images=5 (1 done)" in header()
    assert " method=ddim sampler=" in header("method=ddim")  # no solver: DDIM inversion has none
    assert " solver=fixed_point " in header("solver=fixed_point")
    assert header("model.path=/data/my-sd").startswith("preciseinv: model=mini (/data/my-sd) method=preciseinv")
    with initialize_config_module("configs", version_base=None):  # what auto settled on, once the trainer is built
        settled = console.header(compose("fit", overrides=["output_dir=out"]), 4, 0, "ddim", "1 (cpu)")
    assert " sampler=ddim T=2 " in settled and " devices=1 (cpu) " in settled


def test_the_sampler_a_model_runs_is_read_from_its_scheduler_config():
    from preciseinv.models.base import sampler_for
    from preciseinv.models.loading import native_sampler

    assert native_sampler(None) == "ddim"  # the embedded model
    assert [sampler_for({"_class_name": name}) for name in ("FlowMatchEulerDiscreteScheduler", "LCMScheduler",
                                                             "PNDMScheduler")] == ["euler", "lcm", "ddim"]


def test_a_closing_line_starts_below_an_unfinished_progress_bar(capsys, monkeypatch):
    """On a terminal or in a log file, an error or the interrupt line after a progress bar left mid-line gets its own
    line."""
    console.bar_opened()
    with pytest.raises(SystemExit):
        console.fail("a refused setting")
    said = capsys.readouterr()
    assert said.out == "\n" and said.err == "preciseinv: error: a refused setting\n"
    console.close_bar_line()  # no bar open now (nor once prediction ended): nothing printed
    console.bar_opened()
    console.bar_opened(False)
    console.close_bar_line()
    assert capsys.readouterr().out == ""


def test_a_ctrl_c_as_the_command_starts_leaves_no_folder(fresh_sigint, tmp_path, monkeypatch):
    from preciseinv import fit

    monkeypatch.setattr("sys.argv", ["preciseinv.fit", "~logger", f"output_dir={tmp_path / 'out'}"])
    with pytest.raises(SystemExit) as exit_:
        with console.interruptible():  # what fit.main wraps the command in
            os.kill(os.getpid(), signal.SIGINT)  # while the libraries start: remembered, acted on as the code begins
            fit._command("fit")
    assert exit_.value.code == 130
    assert not (tmp_path / "out").exists()  # Hydra made it (with .hydra/ only) before the command's code ran


def test_a_sweep_flag_after_the_overrides_is_moved_before_them(monkeypatch):
    """Hydra reads --multirun only before the overrides (after them: argparse's usage, 7 lines)."""
    monkeypatch.setattr("sys.argv", ["preciseinv.fit", "~logger", "method=ddim,ceiling", "--multirun"])
    monkeypatch.setenv("PRECISEINV_DATED_SWEEP", "multirun/2026-01-01/00-00-00")  # the folder, dated once
    console.command_line("fit")
    assert sys.argv == ["preciseinv.fit", "--multirun", "~logger", "method=ddim,ceiling",
                        "hydra.sweep.dir=multirun/2026-01-01/00-00-00"]


def test_the_projects_warnings_are_one_line_others_go_on_as_before(capsys, recwarn):
    import warnings

    from preciseinv.errors import PreciseInvWarning

    with console.quiet(False):
        warnings.warn("data.crop=none: 2 image(s) have a long side over 8x data.resolution", PreciseInvWarning)
        warnings.warn("a library's own warning", UserWarning)
    err = capsys.readouterr().err
    assert "preciseinv: warning: data.crop=none: 2 image(s) have a long side over 8x data.resolution\n" in err
    assert "preciseinv: warning: a library's" not in err and "PreciseInvWarning" not in err
    assert [str(w.message) for w in recwarn] == ["a library's own warning"]  # handed on to Python's own display
