"""run.json: what a run resolved at start and the pace it ran at."""

import json

from preciseinv.outputs.run_record import forget_last_run, record_resolved, steady_rate


def test_steady_rate_leaves_the_first_batch_out():
    # the first batch ends at t = 10 s (start-up, probe, compile included); then 8 + 8 + 4 images in 4 s
    assert steady_rate([(10.0, 8), (11.0, 8), (12.0, 8), (14.0, 4)]) == 20 / 4
    assert steady_rate([(10.0, 8)]) is None and steady_rate([]) is None
    assert steady_rate([(3.0, 8), (3.0, 8)]) is None  # no time between them: no rate
    # a first batch of unreadable inputs only does no work: the clock starts at the first batch that did
    assert steady_rate([(1.0, 0), (10.0, 8), (12.0, 8)]) == 8 / 2


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
