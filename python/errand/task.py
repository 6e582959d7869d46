"""``TaskDefinition``: a Python function registered as an errand task type, with the policy
the worker registers (``PUT /v1/worker/task-types``) and the type of its arguments."""

from __future__ import annotations

import inspect
import typing
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError

from .context import TaskContext
from .errors import Fatal
from .protocol import TaskTypeSpec

A = TypeVar("A")
R = TypeVar("R")

TaskFunction = Callable[[A, TaskContext], Awaitable[R]]


def _args_model(fn: Callable[..., Any]) -> type[BaseModel] | None:
    """The pydantic model of the function's first parameter, or None for ``dict``/none."""
    try:
        signature = inspect.signature(fn, eval_str=True)
    except NameError:
        signature = inspect.signature(fn)
    params = list(signature.parameters.values())
    if len(params) != 2:
        raise TypeError(
            f"task function {fn.__qualname__} must take (args, ctx), not {len(params)} parameters"
        )
    annotation = params[0].annotation
    if annotation is inspect.Parameter.empty or annotation is Any:
        return None
    if isinstance(annotation, str):
        raise TypeError(
            f"cannot resolve the annotation {annotation!r} of {fn.__qualname__}'s args: "
            "define the model at module level"
        )
    origin = typing.get_origin(annotation) or annotation
    if inspect.isclass(origin) and issubclass(origin, BaseModel):
        return origin
    if inspect.isclass(origin) and issubclass(origin, Mapping):
        return None
    raise TypeError(
        f"the args of {fn.__qualname__} must be annotated with a pydantic BaseModel "
        f"subclass or dict, not {annotation!r}"
    )


class TaskDefinition(Generic[A, R]):
    """A registered task: calling it calls the function (handy in tests)."""

    def __init__(
        self,
        fn: TaskFunction[A, R],
        *,
        name: str,
        queue: str | None = None,
        max_attempts: int | None = None,
        timeout: float | None = None,
        ttl: float | None = None,
        backoff: tuple[float, float] | None = None,
    ) -> None:
        if not inspect.iscoroutinefunction(fn):
            raise TypeError(f"task function {fn.__qualname__} must be `async def`")
        self.fn = fn
        self.name = name
        self.queue = queue
        self.max_attempts = max_attempts
        self.timeout = timeout
        self.ttl = ttl
        self.backoff = backoff
        self.args_model = _args_model(fn)

    def __call__(self, args: A, ctx: TaskContext) -> Awaitable[R]:
        return self.fn(args, ctx)

    def __repr__(self) -> str:
        return f"TaskDefinition(name={self.name!r}, queue={self.queue!r})"

    @property
    def args_schema(self) -> dict[str, Any]:
        """The JSON Schema of the arguments: the model's, or ``{"type": "object"}``."""
        if self.args_model is None:
            return {"type": "object"}
        return self.args_model.model_json_schema()

    def spec(self) -> TaskTypeSpec:
        """The protocol's task-type entry; unset fields take the server's defaults."""
        spec: TaskTypeSpec = {"name": self.name, "args_schema": self.args_schema}
        if self.queue is not None:
            spec["queue"] = self.queue
        if self.max_attempts is not None:
            spec["max_attempts"] = self.max_attempts
        if self.timeout is not None:
            spec["timeout_s"] = self.timeout
        if self.ttl is not None:
            spec["ttl_s"] = self.ttl
        if self.backoff is not None:
            spec["backoff"] = {"base_s": self.backoff[0], "max_s": self.backoff[1]}
        return spec

    def parse_args(self, raw: Any) -> Any:
        """The value the function receives: a validated model instance, or the raw JSON.
        Arguments the model rejects fail the attempt for good (kind ``invalid_args``)."""
        if self.args_model is None:
            return raw
        try:
            return self.args_model.model_validate(raw)
        except ValidationError as e:
            raise Fatal(
                f"the arguments do not match {self.args_model.__name__}: {e.error_count()} error(s)",
                kind="invalid_args",
                details={"errors": e.errors(include_url=False, include_context=False)},
            ) from e
