"""A model given by path alone runs with its family preset's defaults and is named by its path."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from preciseinv.presets import adopt_family, explicit_keys, family_preset, preset_config

FAMILIES = {"tiny_sd": "sd15", "tiny_sd_v": "sd21", "tiny_sdxl": "sdxl", "tiny_sdxl_turbo": "sdxl_turbo",
            "tiny_sd3": "sd3", "tiny_sd35": "sd35_medium", "tiny_flux": "flux_schnell", "tiny_flux_dev": "flux_dev"}


@pytest.mark.parametrize("fixture,family", list(FAMILIES.items()))
def test_each_family_takes_its_presets_defaults(fixture, family, request):
    path = str(request.getfixturevalue(fixture))
    assert family_preset(path) == family
    node = preset_config("mini")
    node.path = path
    assert adopt_family(node, explicit=set()) == family
    chosen = preset_config(family)
    for key in ("lr", "precision", "dtype", "sampler", "guidance_embedding", "num_steps"):
        assert node[key] == chosen[key], key
    assert node.name == path and node.path == path  # the run is named by what it loads


def test_a_preset_beside_a_model_of_another_network_is_one_line(tiny_sd, tiny_sdxl):
    """model=PRESET model.path=DIR (an experiment's preset with one's own model): a DIR of another network would run
    with the preset's lr, resolution and sampler; of the same network (an LCM preset's base included) it runs."""
    from preciseinv.errors import PreciseInvError
    from preciseinv.presets import check_preset_fits

    for preset in ("sd14", "sd15", "lcm_sd15"):
        node = preset_config(preset)
        node.path = str(tiny_sd)
        check_preset_fits(node)
    node = preset_config("sd14")
    node.path = str(tiny_sdxl)
    with pytest.raises(PreciseInvError, match=r"holds an SDXL UNet but model=sd14 is a preset for an SD 1\.x/2\.x "
                                              r"UNet: give model=sdxl with it"):
        check_preset_fits(node)


def test_lcm_and_pixel_pipelines(tmp_path):
    from preciseinv.testing.tiny import save_tiny_lcm, save_tiny_pixel

    assert family_preset(save_tiny_lcm(tmp_path / "lcm")) == "lcm_sd15"
    assert family_preset(save_tiny_pixel(tmp_path / "pixel")) == "mini"


def test_what_the_command_line_set_stays(tiny_sdxl):
    node = preset_config("mini")
    node.path, node.lr, node.precision = str(tiny_sdxl), 0.3, "32-true"
    adopt_family(node, explicit=explicit_keys(["model.path=x", "model.lr=0.3", "model.precision=32-true", "seed=1"]))
    assert node.lr == 0.3 and node.precision == "32-true"  # set by the user, even where equal to mini's
    assert node.dtype == preset_config("sdxl").dtype
    node = preset_config("mini")  # outside a Hydra run: what differs from the mini preset counts as set
    node.path, node.lr = str(tiny_sdxl), 0.3
    adopt_family(node)
    assert node.lr == 0.3 and node.precision == preset_config("sdxl").precision


def test_presets_and_the_embedded_model_are_left_alone(tiny_sd):
    node = preset_config("sd15")
    assert adopt_family(node) is None and node.name == "sd15"
    node = preset_config("mini")
    assert adopt_family(node) is None and node.name == "mini"


def test_fit_with_a_path_is_named_by_it(fit_in_process, tiny_sd, tmp_path):
    summary = fit_in_process(f"model.path={tiny_sd}", "method=ddim", "~logger", f"output_dir={tmp_path}", "lpips=false")
    assert summary["config"]["model"]["name"] == str(tiny_sd)
    assert summary["config"]["model"]["precision"] == "16-mixed"  # sd15's (a GPU would run it so)


@pytest.mark.parametrize("argv,message", [
    (["method.etaa=1"], "method.etaa is not a setting; did you mean method.eta?"),
    (["solvr=adamw"], "solvr is not a setting; did you mean solver?"),
    (["data.rot=x"], "data.rot is not a setting; did you mean data.root?"),
    (["solver=adamm"], "solver=adamm is not an option; did you mean adam? solver is one of adam, adamw,"),
    (["data=cocoa"], "data=cocoa is not an option; did you mean coco? data is one of coco,"),
    (["model=sd1.5"], "model=sd1.5 is not an option; did you mean sd15? model is one of flux_dev,"),
    (["~logger", "logger=csvv"], "logger=csvv with ~logger: ~logger removes what logger=csvv sets; give one of them"),
    (["model=sd16"], "model=sd16 is not an option; did you mean sd15?"),  # as close as sd21, with a longer start
    (["method.eta=abc"], "method.eta=abc: method.eta takes a number (default 0.001)"),
    (["method=ddim", "method.eta=abc"], "method.eta=abc: method.eta takes a number"),
    (["lpips=maybe"], "lpips=maybe: lpips takes true or false"),
    (["num_steps=two"], "num_steps=two: num_steps takes a number"),
    (["output_dir=FILE"], "is a file, not a folder"),
    (["output_dir=runs/method=ddim,num_steps=2"], "output_dir=runs/method=ddim,num_steps=2: Hydra reads characters "
                                                  "such as = , [ ] { } ( ) ~ # and quotes in a value as syntax: quote "
                                                  "the value, output_dir='runs/method=ddim,num_steps=2', as one"),
    (["source=a cat", "target=a dog, smiling"], "target=a dog, smiling: a comma makes a sweep (add -m), [a dog, "
                                                "smiling] a list, and target='a dog, smiling' (quoted"),
    (["timesteps=[1,501]", "method=ddim,edict"], "method=ddim,edict: a comma makes a sweep (add -m)"),
    (["data.root=~/photos"], "quote the value, data.root='~/photos', as one shell argument"),
    (["data.root=it's"], "quote the value, data.root=\"it's\", as one shell argument"),
    (["method=edict", "method.mxi=3"], "method.mxi is not a setting; did you mean method.mix?"),
    (["eta=1e-2"], "eta is not a setting; did you mean method.eta?"),  # a key's last part: the shortest such key
    (["max_iters=5"], "max_iters is not a setting; did you mean method.max_iters?"),
    (["T=4"], "T is not a setting; did you mean num_steps?"),  # the header line's name for it
    (["solver=adamW"], "solver=adamW is not an option; did you mean adamw?"),  # the same name in other case first
    (["method.max_iters=1e3"], "method.max_iters=1e3: method.max_iters takes a whole number (default 200): write "
                               "method.max_iters=1000"),  # its constructor takes an int only
    (["method.max_iters=50.5"], "method.max_iters=50.5: method.max_iters takes a whole number (default 200)"),
    (["retry=spectal"], "retry=spectal is not an option; did you mean spectral?"),
    (["--model", "mini"], "--model: settings are written key=value here (model=...), not as --options"),
    (["--max-iters=5"], "--max-iters=5: settings are written key=value here (max_iters=...)"),
    (["photos/"], "photos/: settings are written key=value here: data=folder data.root=photos/"),  # the = forgotten
    (["data.root", "photos/"], "data.root: settings are written key=value, as one shell argument (data.root=VALUE)"),
    (["-m", "method=ddim,ceiling", "output_dir=runs/x"], "output_dir=runs/x with --multirun: every run of the sweep "
                                                          "would write into that one folder; drop output_dir="),
    (["-m", "method=ddim,ceiling", "output_dir='runs/a,b'"], "output_dir='runs/a,b' with --multirun: every run"),
])
def test_command_line_mistakes_are_one_line(argv, message, tmp_path):
    from preciseinv.errors import PreciseInvError
    from preciseinv.presets import check_command_line

    (tmp_path / "f").write_text("x")
    argv = [a.replace("FILE", str(tmp_path / "f")) for a in argv]
    with pytest.raises(PreciseInvError, match=re.escape(message)) as error:
        check_command_line("fit", argv)
    assert "\n" not in str(error.value)
    check_command_line("fit", ["solver=adamw", "method.eta=1e-5", "-m"])  # valid, and flags are Hydra's
    check_command_line("fit", ["--cfg", "job"])  # a flag's value is its own word
    check_command_line("fit", ["-cn", "edit", "--info", "defaults"])
    check_command_line("fit", ["-m", "hydra/launcher=basic", "output_dir=runs/x"])  # a one-run sweep: one folder
    check_command_line("fit", ["method.eta=1e-5", "method.max_iters=50", "lpips=false", "data.batch_size=4"])
    check_command_line("fit", ["guidance_scale=7.5", "model.lr=1", "method.eta=1"])  # floats where floats go
    check_command_line("fit", ["model.compile=reduce-overhead", "data.batch_size=auto", "trainer.devices=auto",
                               "timesteps=[1,501]", "data.root=/x y", "data.prompt=a cat", "+trainer.deterministic=true",
                               "output_dir='runs/method=ddim,num_steps=2'", "trainer.precision=bf16-mixed"])
    assert "_spec" not in str(error.value)


def test_help_lists_groups_options_and_common_settings():
    from preciseinv.presets import COMMON, help_text

    text = help_text("fit")
    assert re.search(r"\n  solver +hybrid, adam, adamw,", text)  # the default first
    assert "model" in text and "sd15" in text and "_spec" not in text
    assert all(example in text for example, _ in COMMON) and len(COMMON) == 10
    assert "preciseinv.edit" in help_text("edit").splitlines()[0] and "source=TEXT" in help_text("edit")
    assert "a=IMG b=IMG" in help_text("interpolate") and "trainer.devices" not in help_text("interpolate")
    assert "resumes there" in text and "resumes there" not in help_text("interpolate")
    assert "data=folder" not in help_text("edit")  # edit reads image= or pairs=
    # options made for another command are not listed; ~logger names the command's own default logger
    assert "edit_pairs" not in text and "learn_init" not in text and "edit_pairs" in help_text("edit")
    assert re.search(r"\n  trainer +learn_init\n", help_text("learn_init"))  # not fit's trainer
    assert re.search(r"\n  data +edit_pairs, piebench\n", help_text("edit"))  # what edit can read
    assert re.search(r"\n  data +samples, coco, folder, piebench, webdataset\n", text)  # fit: all it can read
    assert re.search(r"\n  paper_row +bdia, ", text) and "paper_row" not in help_text("edit")  # fit's sweeps
    assert "~logger" in text and "no W&B logging" in text and "no CSV logging" in help_text("learn_init")


def test_a_wrongly_typed_value_is_one_line(fit_in_process, tmp_path):
    from preciseinv.errors import PreciseInvError

    with pytest.raises(PreciseInvError, match="method: .* check the method.\\* values") as error:
        fit_in_process("method.eta=abc", "~logger", f"output_dir={tmp_path}")
    assert "\n" not in str(error.value)


def test_removing_what_a_command_does_not_have_is_one_line():
    """``~logger`` (fit's way to log nowhere) given to interpolate, which has no logger: one line saying to drop it,
    not Hydra's "Could not delete" with a defaults-list lecture."""
    from preciseinv.errors import PreciseInvError
    from preciseinv.presets import check_command_line

    with pytest.raises(PreciseInvError, match=re.escape("~logger: python -m preciseinv.interpolate has no logger to "
                                                        "remove: drop ~logger")):
        check_command_line("interpolate", ["a=x.png", "b=y.png", "~logger"])
    check_command_line("fit", ["~logger", "--multirun", "method=ddim,preciseinv"])  # Hydra's flags stay Hydra's


@pytest.mark.parametrize("command,argv,message", [
    ("edit", ["prompt=a cat"], "prompt is not a setting; did you mean source?"),  # edit's prompts: source, target
    ("edit", ["target_prompt=a dog"], "target_prompt is not a setting; did you mean target?"),
    ("fit", ["prompt=a cat"], "prompt is not a setting; did you mean data.prompt?"),  # fit has no source
])
def test_a_prompt_key_points_to_the_commands_own(command, argv, message):
    from preciseinv.errors import PreciseInvError
    from preciseinv.presets import check_command_line

    with pytest.raises(PreciseInvError, match=re.escape(message)):
        check_command_line(command, argv)


def test_a_sweep_runs_folder_name_is_flat_short_and_stable(tmp_path):
    """A sweep's run folders are named by their overrides: a path's slashes no longer nest folders (a hash keeps
    a/b and a_b apart), a name over the file system's limit is cut and hashed (it was an OSError), the same sweep
    finds its folders again, and one begun with the older names resumes in them."""
    from preciseinv.presets import folder_name

    assert folder_name(tmp_path, "method=ddim,num_steps=2") == "method=ddim,num_steps=2"  # as Hydra names it
    assert folder_name(tmp_path, "model.path=/a/b,num_steps=2").startswith("model.path=_a_b,num_steps=2-")
    assert folder_name(tmp_path, "model.path=/a/b") != folder_name(tmp_path, "model.path=/a_b")  # no collision
    long = "model.path=/" + "x" * 300 + ",seed=0"
    name = folder_name(tmp_path, long)
    assert len(name.encode()) <= 200 and "/" not in name and name == folder_name(tmp_path, long)
    assert name != folder_name(tmp_path, long.replace("seed=0", "seed=1"))
    no_slash = "note=" + "x" * 300  # too long to stat under the sweep folder: cut and hashed, no OSError
    assert len(folder_name(tmp_path, no_slash).encode()) <= 200
    (tmp_path / "old" / "model.path=" / "a").mkdir(parents=True)  # a sweep begun before: its folders as they are
    assert folder_name(tmp_path / "old", "model.path=/a") == "model.path=/a" and folder_name(tmp_path, "") == ""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"}
    model = tmp_path / ("m" * 120) / ("n" * 100)
    model.parent.mkdir()
    model.symlink_to(Path(__file__).parents[1] / "benchmarks" / "assets" / "mini-ddpm-clip")
    sweep = tmp_path / "sweep"
    command = [sys.executable, "-m", "preciseinv.fit", "--multirun", "method=ceiling", "data.limit=1", "~logger",
               "lpips=false", f"model.path={model}", "seed=0,1", f"hydra.sweep.dir={sweep}"]
    for _ in range(2):  # the second time, the same folders: nothing to do
        proc = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-2000:]
    runs = [p for p in sweep.iterdir() if p.is_dir()]
    assert len(runs) == 2 and all((p / "summary.json").is_file() for p in runs)
    assert all(len(p.name.encode()) <= 200 for p in runs)
    assert "already inverted" in proc.stdout + proc.stderr


def test_a_sweeps_mistake_is_one_line_naming_the_run_before_any_runs():
    """--multirun: each swept value is checked in one run at least, as Hydra will compose it (the experiment's own
    sweep included); a key only some runs have names the run it breaks and one that takes it."""
    from preciseinv.errors import PreciseInvError
    from preciseinv.presets import check_command_line

    paper = ["-m", "experiment=paper_coco_sd14", "data.root=/x"]
    check_command_line("fit", paper)  # the sweep itself is fine
    with pytest.raises(PreciseInvError, match=r"^run paper_row=ddim,num_steps=2 of the sweep: method\.max_iters is "
                                              r"not a setting.*\(run paper_row=preciseinv_adamw_eta1e-2,num_steps=2 "
                                              r"takes it"):
        check_command_line("fit", [*paper, "method.max_iters=20"])
    with pytest.raises(PreciseInvError, match=r"^paper_row=ddimm is not an option; did you mean ddim\?"):
        check_command_line("fit", [*paper, "paper_row=ddimm,ceiling"])
    with pytest.raises(PreciseInvError, match=r"^run .*method\.eta=abc of the sweep: method\.eta=abc: method\.eta "
                                              r"takes a number \(default 0\.001\)$"):  # no hint: a value
        check_command_line("fit", ["-m", "method=preciseinv", "method.eta=1e-2,abc"])
    with pytest.raises(PreciseInvError, match=r"^num_step is not a setting; did you mean num_steps\?"):
        check_command_line("fit", ["-m", "method=ddim,ceiling", "num_step=2"])
    with pytest.raises(PreciseInvError, match=r"^--cfg with --multirun"):
        check_command_line("fit", [*paper, "--cfg", "job"])
    with pytest.raises(PreciseInvError, match=r"^experiment=paper_coco_sd14 is a sweep of the paper's rows: add "
                                              r"--multirun, or paper_row=ROW"):
        check_command_line("fit", paper[1:])
    with pytest.raises(PreciseInvError, match=r"^run method=cieling,seed=1 of the sweep: method=cieling is not an "
                                              r"option"):  # every value checked, whatever the order
        check_command_line("fit", ["-m", "method=ddim,cieling", "seed=range(0,30)"])
    with pytest.raises(PreciseInvError, match=r"^experiment=paper_coco_sd14 is a sweep"):
        check_command_line("fit", [*paper[1:], "-cd", "/tmp"])
    check_command_line("fit", [*paper[1:], "paper_row=ddim"])  # one row of it: one run
    check_command_line("fit", [*paper[1:], "--cfg", "hydra"])  # its settings, printed
    check_command_line("fit", [*paper[1:], "hydra.mode=MULTIRUN"])  # Hydra's other way to sweep
    with pytest.raises(PreciseInvError, match=r"^run num_steps=0 of the sweep: num_steps must be a whole number, "
                                              r"at least 1, got 0"):  # a value's mistake, not only its type's
        check_command_line("fit", ["-m", "method=ddim", "num_steps=2,0"])
    with pytest.raises(PreciseInvError, match=r"^run method\.eta=0 of the sweep: method\.eta must be > 0, got 0"):
        check_command_line("fit", ["-m", "method.eta=1e-3,0"])
    with pytest.raises(PreciseInvError, match=r"^run method\.eta=0 of the sweep: method\.eta must be > 0, got 0"):
        check_command_line("fit", ["hydra.mode=MULTIRUN", "method.eta=1e-3,0"])  # Hydra's other way to ask for it
    with pytest.raises(PreciseInvError, match=r"^run method\.retry_iters=0 of the sweep: method\.retry_iters must "
                                              r"be >= 1, got 0"):
        check_command_line("fit", ["-m", "retry=spectral", "method.retry_iters=100,0"])
    for argv, said in ((["method.retry=spectral"], "method.retry=spectral: choose the retry solver as retry=spectral"),
                       (["method=ddim", "retry=spectral"], "retry= is a second solve of method=preciseinv"),
                       (["solver=adamw", "retry=adamw"], "the retry solver is the solver itself"),
                       (["method.retry_iters=50"],
                        "method.retry_iters is the cap of a second solve, and there is none")):
        with pytest.raises(PreciseInvError, match=re.escape(said)):
            check_command_line("fit", argv)
    for value in ("1.5", "abc", "true"):  # its default is null: Hydra holds it to no type
        with pytest.raises(PreciseInvError, match=r"^method\.retry_iters takes a whole number of iterations, or null"):
            check_command_line("fit", ["retry=spectral", f"method.retry_iters={value}"])
    with pytest.raises(PreciseInvError, match=r"^run retry=adamw of the sweep: retry\.lr must be > 0, got 0"):
        check_command_line("fit", ["-m", "retry=spectral,adamw", "model.lr=0", "solver=fixed_point"])
    extra = Path(__file__).parent / "data" / "no-such-search-path"  # a search path: Hydra judges the sweep
    check_command_line("fit", ["-m", "method=myddim,ceiling", f"hydra.searchpath=[file://{extra}]"])


def test_another_commands_option_and_an_output_dir_below_a_file_are_one_line(tmp_path, monkeypatch):
    """data=edit_pairs is edit's: given to fit it was an InterpolationKeyError on keys only edit has; an
    output_dir below a file was Hydra's NotADirectoryError as it made the folder."""
    from preciseinv.errors import PreciseInvError
    from preciseinv.presets import check_command_line

    with pytest.raises(PreciseInvError, match=r"^data=edit_pairs is an option of python -m preciseinv\.edit, not of "
                                              r"python -m preciseinv\.fit \(data here is one of coco, folder, "):
        check_command_line("fit", ["data=edit_pairs"])
    check_command_line("edit", ["data=edit_pairs", "pairs=x.jsonl"])  # its own command takes it
    check_command_line("edit", ["data=folder", "data.root=x"])  # an option of every command's: as before
    check_command_line("learn_init", ["trainer=learn_init", "runs=[x]"])
    with pytest.raises(PreciseInvError, match=r"^Interpolation key 'model.precision' not found$"):  # fit's trainer
        check_command_line("learn_init", ["trainer=default", "runs=[x]"])
    with pytest.raises(PreciseInvError, match=r"Could not override 'data'"):  # no data group: not "an option of"
        check_command_line("interpolate", ["data=piebench", "a=x.png", "b=y.png"])
    with pytest.raises(PreciseInvError, match=r"^data=foldr is not an option; did you mean folder\? data is one of "
                                              r"coco, folder, piebench, samples, webdataset$"):  # fit's options only
        check_command_line("fit", ["data=foldr"])
    (tmp_path / "photo.png").write_bytes(b"x")
    with pytest.raises(PreciseInvError, match=r"cannot be made: '.*photo\.png' is a file, not a folder"):
        check_command_line("fit", [f"output_dir={tmp_path / 'photo.png' / 'out'}"])
    check_command_line("fit", [f"output_dir={tmp_path / 'new' / 'out'}"])  # a folder to make: fine
    monkeypatch.setattr("preciseinv.presets.os.access", lambda path, mode: False)  # (root may write anywhere)
    with pytest.raises(PreciseInvError, match=r"cannot be made: '.*' is not writable by this user"):
        check_command_line("fit", [f"output_dir={tmp_path / 'new' / 'out'}"])


def test_a_key_added_to_a_class_without_it_is_one_line_before_the_model_loads():
    """+solver.foo=1 was a TypeError once the model had loaded and the first subproblem built its solver; an
    encoder's or a start's was labelled with the node around it (engine, method)."""
    from preciseinv.errors import PreciseInvError
    from preciseinv.presets import check_command_line

    with pytest.raises(PreciseInvError, match=r"^solver\.momentm is not a setting of solver=hybrid; did you mean "
                                              r"momentum\? solver=hybrid takes phases, "):
        check_command_line("fit", ["+solver.momentm=0.5"])
    with pytest.raises(PreciseInvError, match=r"^encoder\.foo is not a setting of encoder=mean; encoder=mean takes "
                                              r"no settings"):
        check_command_line("fit", ["+encoder.foo=1"])
    with pytest.raises(PreciseInvError, match=r"^init\.foo is not a setting of init=ddim"):
        check_command_line("fit", ["+init.foo=1"])
    check_command_line("fit", ["solver=adamw", "+solver.returns_best=true"])  # one its config leaves out: fine
    check_command_line("fit", ["+method._convert_=all"])  # Hydra's own
    with pytest.raises(PreciseInvError, match=r"^model\.foo is not a setting of model \("):  # presets share a class
        check_command_line("fit", ["+model.foo=1"])


def test_a_sweep_hydra_would_date_gets_its_folder_once(monkeypatch):
    """The other processes of a multi-GPU run start the command again: each dated its own sweep folder, and the
    runs' samples were split between them. The folder is fixed once and handed on."""
    from preciseinv.console import pinned_sweep_dir

    monkeypatch.setenv("PRECISEINV_DATED_SWEEP", "")  # none yet (and none left after the test)
    argv = ["fit", "-m", "method=ddim,ceiling"]
    first = pinned_sweep_dir(argv)
    assert re.fullmatch(r"hydra\.sweep\.dir=multirun/\d{4}-\d{2}-\d{2}/\d{2}-\d{2}-\d{2}", first[-1])
    assert pinned_sweep_dir(argv) == first  # a rank started later: the same folder
    assert pinned_sweep_dir([*argv, "hydra.sweep.dir=x"]) == [*argv, "hydra.sweep.dir=x"]
    assert pinned_sweep_dir(["fit", "method=ddim"]) == ["fit", "method=ddim"]
    hydra_mode = ["fit", "hydra.mode=MULTIRUN", "method=ddim,ceiling"]  # Hydra's other way to ask for a sweep
    assert pinned_sweep_dir(hydra_mode) == [*hydra_mode, first[-1]]


def test_a_group_set_to_null_is_its_none_option_or_no_choice():
    """Hydra takes group=null as no choice only in a defaults list; on the command line it was a traceback."""
    from preciseinv.presets import check_command_line, null_choices

    argv = ["retry=NULL", "-m", "retry=null,spectral", "logger=null", "+paper_row=null", "output_dir=a,null", "x=null",
            "+retry=null", "data.root=null"]
    assert null_choices("fit", argv) == ["retry=none", "-m", "retry=none,spectral", "~logger", "~paper_row",
                                         "output_dir=a,null", "x=null", "retry=none", "data.root=null"]
    assert null_choices("edit", ["retry=null"]) == ["retry=none"]  # edit takes fit's defaults list
    assert null_choices("learn_init", ["data=null", "logger=null"]) == ["data=null", "~logger"]  # data: no group there
    check_command_line("fit", ["-m", *null_choices("fit", ["retry=null,spectral"])])  # each run of the sweep composes
    check_command_line("fit", ["--cfg", "job", "hydra.mode=MULTIRUN"])  # Hydra prints the config, as without it

