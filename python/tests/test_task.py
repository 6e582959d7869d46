from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

import errand
from errand import TaskContext


class Args(BaseModel):
    title: str


def test_schema_from_the_annotation() -> None:
    client = errand.Client(url="http://x")

    @client.task("model")
    async def model(args: Args, ctx: TaskContext) -> None: ...

    @client.task("plain")
    async def plain(args: dict[str, Any], ctx: TaskContext) -> None: ...

    @client.task("bare")
    async def bare(args, ctx):  # type: ignore[no-untyped-def]
        ...

    assert model.args_schema == Args.model_json_schema()
    assert plain.args_schema == {"type": "object"} and bare.args_schema == {"type": "object"}
    assert isinstance(model.parse_args({"title": "t"}), Args)
    assert plain.parse_args({"a": 1}) == {"a": 1}
    with pytest.raises(errand.Fatal) as e:
        model.parse_args({})
    assert e.value.kind == "invalid_args"
    assert tuple(e.value.details["errors"][0]["loc"]) == ("title",)
    assert set(client.tasks) == {"model", "plain", "bare"}


def test_bad_task_functions_are_refused() -> None:
    client = errand.Client(url="http://x")
    with pytest.raises(TypeError, match="async def"):
        client.task("sync")(lambda args, ctx: None)  # type: ignore[arg-type, return-value]

    async def one(args: dict[str, Any]) -> None: ...

    with pytest.raises(TypeError, match="args, ctx"):
        client.task("one")(one)  # type: ignore[arg-type]

    async def wrong(args: int, ctx: TaskContext) -> None: ...

    with pytest.raises(TypeError, match="BaseModel"):
        client.task("wrong")(wrong)

    @client.task("dup")
    async def dup(args: dict[str, Any], ctx: TaskContext) -> None: ...

    with pytest.raises(ValueError):
        client.task("dup")(dup.fn)
