"""run.json: what a run resolved at start, the pace it ran at, and the settings a rerun must keep."""

import json
import re
from pathlib import Path

import pytest

from preciseinv.errors import PreciseInvError
from preciseinv.outputs.run_record import check_resumable, forget_last_run, record_resolved, steady_rate
from preciseinv.presets import compose, option_of


def test_steady_rate_leaves_the_first_batch_out():
    # the first batch ends at t = 10 s (start-up, probe, compile included); then 8 + 8 + 4 images in 4 s
    assert steady_rate([(10.0, 8), (11.0, 8), (12.0, 8), (14.0, 4)]) == 20 / 4
    assert steady_rate([(10.0, 8)]) is None and steady_rate([]) is None
    assert steady_rate([(3.0, 8), (3.0, 8)]) is None  # no time between them: no rate
    # a first batch of unreadable inputs only does no work: the clock starts at the first batch that did
    assert steady_rate([(1.0, 0), (10.0, 8), (12.0, 8)]) == 8 / 2
    # nor does a last one: the clock stops at the last batch that did (no rate of 0 images per second)
    assert steady_rate([(10.0, 8), (12.0, 8), (15.0, 0)]) == 8 / 2 and steady_rate([(10.0, 3), (11.0, 0)]) is None


def test_records_go_under_their_key_and_merge(tmp_path):
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"model": {"name": "mini"}}))
    record_resolved(path, {"batch_size": 8})
    record_resolved(path, {"startup": {"model_load_s": 1.0}})
    record_resolved(path, {"images": 4, "steady_images_per_second": None}, key="last_run")
    assert json.loads(path.read_text()) == {
        "model": {"name": "mini"}, "resolved": {"batch_size": 8, "startup": {"model_load_s": 1.0}},
        "last_run": {"images": 4, "steady_images_per_second": None}}
    record_resolved(path, {"images": 8}, key="last_run", replace=True)  # a run's pace replaces the last one's
    assert json.loads(path.read_text())["last_run"] == {"images": 8}
    forget_last_run(tmp_path)  # a rerun starts: what the last run settled and measured is not its own
    assert json.loads(path.read_text()) == {"model": {"name": "mini"}}
    record_resolved(tmp_path / "none.json", {"batch_size": 8})  # no run.json, no fit run: nothing written
    assert not (tmp_path / "none.json").exists()


def test_a_changed_choice_is_named_as_on_the_command_line(tmp_path):
    """A rerun with another method, solver or encoder is refused naming the options (``solver=hybrid there, adamw
    now``), not their classes; a changed value is named by its key; a class of no config option by its path."""
    from omegaconf import OmegaConf

    def config(*overrides):
        return OmegaConf.to_container(compose("fit", [f"output_dir={tmp_path}", *overrides]), resolve=True)

    (tmp_path / "run.json").write_text(json.dumps(config()))
    check_resumable(tmp_path, config("data.limit=2", "init=learned"), option_of)  # not what a latent means
    for overrides, said in ((["solver=adamw"], "solver=hybrid there, adamw now"),
                            (["method=ddim"], "method=preciseinv there, ddim now"),
                            (["encoder=decoder_inversion"], "encoder=mean there, decoder_inversion now"),
                            (["solver=adamw", "method.eta=1e-2"], "method.eta=0.001 there, 0.01 now; solver=hybrid"),
                            (["data=coco", "data.root=/data/coco"], "(data=samples there, coco now)"),
                            (["data=folder", "data.root=/data/photos"], "(data=samples there, folder now)")):
        with pytest.raises(PreciseInvError, match="other settings") as err:
            check_resumable(tmp_path, config(*overrides), option_of)
        assert said in str(err.value) and "_target_" not in str(err.value), str(err.value)
    older = config()  # the shipped images as recorded when data=samples shared data=folder's class
    older["data"]["_target_"] = "preciseinv.datamodules.folder.FolderDataModule"
    (tmp_path / "run.json").write_text(json.dumps(older))
    check_resumable(tmp_path, config(), option_of)  # the same run: it resumes
    with pytest.raises(PreciseInvError, match=re.escape("(data=samples there, coco now)")):
        check_resumable(tmp_path, config("data=coco", "data.root=/data/coco"), option_of)
    (tmp_path / "run.json").write_text(json.dumps(config("data=folder", "data.root=photos/")))
    for spelling in ("./photos", str(Path.cwd() / "photos")):  # one folder, spelled another way
        check_resumable(tmp_path, config("data=folder", f"data.root={spelling}"), option_of)
    said = f"data.root={Path.cwd() / 'photos'} there, {Path.cwd() / 'other'} now) (a dataset that moved: give its old"
    with pytest.raises(PreciseInvError, match=re.escape(said)):
        check_resumable(tmp_path, config("data=folder", "data.root=other"), option_of)
    check_resumable(tmp_path, config("data=folder", "data.root=other"), option_of, finished=False)  # owns no sample
    (tmp_path / "run.json").write_text(json.dumps(config()))
    mine = config()
    mine["method"]["solver"]["_target_"] = "mypackage.MySolver"
    with pytest.raises(PreciseInvError, match=r"method\.solver=preciseinv\.solvers\.Hybrid there, mypackage\.MySolver now"):
        check_resumable(tmp_path, mine, option_of)


def test_without_run_json_the_summary_says_the_settings_and_the_model_s_own_sampler_is_no_change(tmp_path):
    """run.json lost: summary.json's config stands for it (a rerun with other settings is still refused); neither:
    a folder of recorded samples is refused rather than mixed. Naming the model's own sampler changes nothing."""
    from omegaconf import OmegaConf

    def config(*overrides):
        return OmegaConf.to_container(compose("fit", [f"output_dir={tmp_path}", *overrides]), resolve=True)

    (tmp_path / "run.json").write_text("{not json")  # unreadable: as good as lost
    (tmp_path / "summary.json").write_text(json.dumps({"n": 2, "config": config()}))
    check_resumable(tmp_path, config(), option_of)
    with pytest.raises(PreciseInvError, match="method=preciseinv there, ddim now"):
        check_resumable(tmp_path, config("method=ddim", "num_steps=4"), option_of)
    (tmp_path / "summary.json").unlink()
    with pytest.raises(PreciseInvError, match="holds finished samples but no readable run.json") as err:
        check_resumable(tmp_path, config(), option_of)
    assert "\n" not in str(err.value)
    check_resumable(tmp_path, config("method=ddim"), option_of, finished=False)  # no sample: nothing to keep apart
    forget_last_run(tmp_path)  # an unreadable run.json: nothing to forget, no traceback
    record_resolved(tmp_path / "run.json", {"batch_size": 8})
    (tmp_path / "run.json").write_text(json.dumps(config()))  # sampler: null, the model's own
    check_resumable(tmp_path, config("sampler=ddim"), option_of, own={"sampler": "ddim"}.get)
    with pytest.raises(PreciseInvError, match="sampler=ddim there, ddpm now"):
        check_resumable(tmp_path, config("sampler=ddpm"), option_of, own={"sampler": "ddim"}.get)


def test_a_refused_command_puts_the_owning_run_s_hydra_record_back(tmp_path):
    """Hydra rewrites .hydra/ before any check; the run that owns the folder copied its own record as it started
    (what the command noted at its start, not what is in .hydra/ by then), and a refused command puts it back."""
    from preciseinv.outputs.run_record import note_command_record, restore_hydra_record, start_record

    hydra = tmp_path / ".hydra"
    hydra.mkdir()
    (hydra / "overrides.yaml").write_text("- method=ddim\n")
    note_command_record(tmp_path)
    (hydra / "overrides.yaml").write_text("- method=edict\n")  # another command started there meanwhile
    start_record(tmp_path / "run.json", {"method": "ddim"}, {})
    assert (hydra / "run" / "overrides.yaml").read_text() == "- method=ddim\n"
    restore_hydra_record(tmp_path)
    assert (hydra / "overrides.yaml").read_text() == "- method=ddim\n"
    note_command_record(tmp_path / "elsewhere")  # no record there: nothing noted
    restore_hydra_record(tmp_path / "elsewhere")  # nor anything to put back
    assert not (tmp_path / "elsewhere").exists()
