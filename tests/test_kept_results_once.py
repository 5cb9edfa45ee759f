"""A kept result is serialised once: the marker body's JSON is made when the
runner checks it, and the store writes that very text.

So the bounds are checked on what is written, against the bounds it is read
back with (the body's size and depth, not the result's alone). Run on the
stores that need no server: MemoryStore and FileStore.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from asteps import FileStore, MemoryStore, Runner
from asteps._json import MAX_DEPTH
from asteps.errors import ResultNotKept
from asteps.stores.base import EncodedBody, body_json

pytestmark = pytest.mark.anyio

RESULT = {f"field_{i}": f"value {i}" for i in range(50)}


@pytest.fixture(params=["memory", "file"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    return MemoryStore() if request.param == "memory" else FileStore(tmp_path / "store")


async def test_a_kept_step_on_a_file_store_makes_its_body_json_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    encoded: list[Any] = []
    encode = json.JSONEncoder.encode

    def counting(self: json.JSONEncoder, o: Any) -> str:
        if o == RESULT or (isinstance(o, dict) and o.get("result") == RESULT):
            encoded.append(o)  # the result alone, or a body that holds it
        return encode(self, o)

    monkeypatch.setattr(json.JSONEncoder, "encode", counting)
    store = FileStore(tmp_path / "store")
    await Runner(store, "wf", run_id="r1").step("s", lambda: RESULT, keep_result=True)
    assert len(encoded) == 1
    written = (tmp_path / "store" / "wf" / "steps" / "s").read_bytes()
    assert json.loads(written) == {
        "run_id": "r1",
        "workflow_id": "wf",
        "version": None,
        "result": RESULT,
    }


async def test_max_result_bytes_bounds_the_body_as_written(store: Any, tmp_path: Path) -> None:
    # The result's own JSON fits in 1,000 bytes; with simpleflow's keys beside
    # it, the body does not.
    result = "x" * 960
    assert len(json.dumps(result)) < 1000
    with pytest.raises(
        ResultNotKept, match=r"marker body of 1,\d{3} bytes.*max_result_bytes=1,000"
    ):
        await Runner(store, "wf", max_result_bytes=1000).step(
            "big", lambda: result, keep_result=True
        )
    assert await store.list_done("wf/steps/") == set()


async def test_a_body_within_max_result_bytes_is_written_byte_for_byte(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "store")
    runner = Runner(store, "wf", run_id="r1", max_result_bytes=1000)
    await runner.step("s", lambda: "x" * 900, keep_result=True)
    written = (tmp_path / "store" / "wf" / "steps" / "s").read_bytes()
    assert len(written) <= 1000
    assert written == body_json({"run_id": "r1", "workflow_id": "wf", "version": None,
                                 "result": "x" * 900})  # fmt: skip


async def test_a_result_whose_body_would_nest_too_deep_is_refused_not_run_again_forever(
    store: Any,
) -> None:
    # MAX_DEPTH levels in the result are one more in the body, which a later
    # run would refuse to read: refused when written, the step not marked.
    deep: list[Any] = []
    for _ in range(MAX_DEPTH - 1):
        deep = [deep]
    with pytest.raises(ResultNotKept, match="flatten it"):
        await Runner(store, "wf").step("n", lambda: deep, keep_result=True)
    assert await store.list_done("wf/steps/") == set()


async def test_a_result_one_level_shallower_is_kept_and_read_back(store: Any) -> None:
    deep: list[Any] = []
    for _ in range(MAX_DEPTH - 2):
        deep = [deep]
    await Runner(store, "wf").step("n", lambda: deep, keep_result=True)
    again = await Runner(store, "wf").step("n", lambda: None, keep_result=True)
    assert (again.status, again.result) == ("skipped", deep)


def test_an_encoded_body_is_a_dict_whose_json_is_simpleflows_layout() -> None:
    fields = {"run_id": "r1", "workflow_id": "wf", "version": "3", "result": [1, 2]}
    body = EncodedBody(fields)
    assert body == fields
    assert json.loads(json.dumps(body)) == fields  # a store of your own may dump it itself
    assert body_json(body) == body_json(dict(fields)) == json.dumps(fields).encode()
