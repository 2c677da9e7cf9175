"""run.json: what a run resolved at start and the pace it ran at."""

import json

from preciseinv.outputs.run_record import record_resolved, steady_rate


def test_steady_rate_leaves_the_first_batch_out():
    # the first batch ends at t = 10 s (start-up, probe, compile included); then 8 + 8 + 4 images in 4 s
    assert steady_rate([(10.0, 8), (11.0, 8), (12.0, 8), (14.0, 4)]) == 20 / 4
    assert steady_rate([(10.0, 8)]) is None and steady_rate([]) is None
    assert steady_rate([(3.0, 8), (3.0, 8)]) is None  # no time between them: no rate


def test_records_go_under_their_key_and_merge(tmp_path):
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"model": {"name": "mini"}}))
    record_resolved(path, {"batch_size": 8})
    record_resolved(path, {"startup": {"model_load_s": 1.0}})
    record_resolved(path, {"images": 4, "steady_images_per_second": None}, key="last_run")
    assert json.loads(path.read_text()) == {
        "model": {"name": "mini"}, "resolved": {"batch_size": 8, "startup": {"model_load_s": 1.0}},
        "last_run": {"images": 4, "steady_images_per_second": None}}
