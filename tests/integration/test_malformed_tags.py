"""Tags under flowops.* that flowops did not write (by hand, by a bug, by an older version) are
skipped and reported by every registry command, never a crash ("this is a bug", exit 2)."""

from __future__ import annotations

import json

import pytest
from mlflow.tracking import MlflowClient

from flowops.registry.store import Registry

from ..conftest import REPO
from .conftest import flowops

GOOD = {
    "alias": "production",
    "from_version": None,
    "to_version": "1",
    "kind": "promote",
    "time": "2026-11-01T00:00:00Z",
    "actor": "",
    "pr": None,
    "commit": "abc",
    "policy_sha256": None,
    "summary": "first",
    "user": "ci",
    "state": "done",
}
BAD_AUDIT = {
    "flowops.audit.x": "not json",
    "flowops.audit.0000000000002.aa": json.dumps([1, 2]),
    "flowops.audit.0000000000003.bb": json.dumps({"alias": 5}),
    "flowops.audit.0000000000004.cc": json.dumps({**GOOD, "alias": ["production"]}),  # every field, wrong type
    "flowops.audit.0000000000005.dd": json.dumps({**GOOD, "state": "half"}),
    "flowops.audit.0000000000006.ee": json.dumps({**GOOD, "surprise": 1}),
}


@pytest.fixture
def model(store):
    client = MlflowClient(store)
    client.create_registered_model("coco-segmentation")
    client.set_registered_model_tag("coco-segmentation", "flowops.audit.0000000000001.ok", json.dumps(GOOD))
    for key, value in BAD_AUDIT.items():
        client.set_registered_model_tag("coco-segmentation", key, value)
    return client


def test_history_lists_the_good_records_and_names_the_skipped_ones(model, tmp_path):
    (tmp_path / "registry_policy.yaml").write_text((REPO / "registry_policy.yaml").read_text())
    proc = flowops("history", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "first" in proc.stdout or "v1" in proc.stdout
    assert proc.stderr.strip().splitlines()[-1] == (
        f"skipped {len(BAD_AUDIT)} unreadable audit record(s): {', '.join(sorted(BAD_AUDIT))}"
    )
    registry = Registry(model, "coco-segmentation")
    assert [r.key for r in registry.history()] == ["flowops.audit.0000000000001.ok"]


@pytest.mark.parametrize(
    "stray",
    ["not json", json.dumps([1]), json.dumps({"seen": 5}), json.dumps({"seen": [1, 2]}), json.dumps({"seen": "x"})],
)
def test_a_stray_intent_tag_neither_crashes_nor_blocks_the_lock(model, stray):
    model.set_registered_model_tag("coco-segmentation", "flowops.intent.0stray", stray)
    registry = Registry(model, "coco-segmentation")
    with registry.exclusive(timeout_s=5):  # a stray intent is not a promote ahead of this one
        held = {k for k in model.get_registered_model("coco-segmentation").tags if k.startswith("flowops.intent.")}
        assert len(held) == 2
    assert "flowops.intent.0stray" in model.get_registered_model("coco-segmentation").tags
