"""A Jinja2 sandbox with resource limits, for templates that come from users and shared programs.

Jinja's ``ImmutableSandboxedEnvironment`` stops templates from reaching Python internals, but not
from exhausting the machine: ``{{ 9**(9**9) }}`` computes for hours, ``{{ text * 10**11 }}`` asks
for 100 GB, nested loops over ``range(100000)`` never end. Jinja has hooks for all of these but no
limits, so this module adds them (hand-written: no library offers them):

* operators (``**``, ``*``, ``+``, ``%``, ``~``) refuse results larger than ``MAX_VALUE`` items
  or integers of more than ``MAX_INT_BITS`` bits, *before* computing them;
* calls of methods and filters refuse size arguments above ``MAX_VALUE`` and results above it;
* a render may run ``MAX_STEPS`` loop iterations and calls, for ``MAX_SECONDS``, and produce
  ``MAX_OUTPUT`` characters.

Every violation is a :class:`TemplateLimitError` (a ``TemplateError``) naming the limit.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from jinja2 import StrictUndefined, nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.visitor import NodeTransformer

from promptlearning.errors import PromptLearningError

MAX_VALUE = 1_000_000  # characters or items a template expression may build
MAX_OUTPUT = 4_000_000  # characters of one rendered template
MAX_INT_BITS = 4096  # about 1,200 decimal digits
MAX_STEPS = 1_000_000  # loop iterations and calls per render
MAX_SECONDS = 5.0  # wall-clock time per render


class TemplateError(PromptLearningError):
    """A template that does not parse, names a missing field, or tries to escape the sandbox."""


class TemplateLimitError(TemplateError):
    """A template that would use too much time or memory."""


@dataclass
class _Budget:
    deadline: float
    steps: int = 0


_budget: ContextVar[_Budget | None] = ContextVar("template_budget", default=None)


def _step(count: int = 1) -> None:
    budget = _budget.get()
    if budget is None:
        return
    budget.steps += count
    if budget.steps > MAX_STEPS:
        raise TemplateLimitError(f"the template ran more than {MAX_STEPS:,} loop iterations and calls")
    if budget.steps % 256 == 0 and time.monotonic() > budget.deadline:
        raise TemplateLimitError(f"the template took longer than {MAX_SECONDS:g} s to render")


def _size(value: Any) -> int | None:
    return len(value) if isinstance(value, str | bytes | list | tuple) else None


def _check_size(value: Any, what: str) -> Any:
    size = _size(value)
    if size is not None and size > MAX_VALUE:
        raise TemplateLimitError(f"{what} would build a value of {size:,} items (the limit is {MAX_VALUE:,})")
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > MAX_INT_BITS:
        raise TemplateLimitError(f"{what} would build an integer of more than {MAX_INT_BITS} bits")
    return value


_FORMAT_WIDTH = re.compile(r"\d{7,}")  # a width or precision of a million or more in a format string


def _check_binop(op: str, left: Any, right: Any) -> None:
    """Refuse an operation whose result would be too large, before computing it."""
    numbers = (int, float)
    if op == "**" and isinstance(left, numbers) and isinstance(right, numbers):
        whole = isinstance(left, int) and isinstance(right, int) and right > 0 and abs(left) > 1
        if whole and right * abs(left).bit_length() > MAX_INT_BITS:
            raise TemplateLimitError(f"{left!r} ** {right!r} would be larger than {MAX_INT_BITS} bits")
    elif op == "*":
        for seq, count in ((left, right), (right, left)):
            if _size(seq) is not None and isinstance(count, int) and len(seq) * count > MAX_VALUE:
                raise TemplateLimitError(f"repeating a value {count:,} times exceeds the limit of {MAX_VALUE:,} items")
        if isinstance(left, int) and isinstance(right, int) and left.bit_length() + right.bit_length() > MAX_INT_BITS:
            raise TemplateLimitError(f"the product would be larger than {MAX_INT_BITS} bits")
    elif op == "+":
        if _size(left) is not None and _size(right) is not None and len(left) + len(right) > MAX_VALUE:
            raise TemplateLimitError(f"the concatenation exceeds the limit of {MAX_VALUE:,} items")
    elif op == "%" and isinstance(left, str) and _FORMAT_WIDTH.search(left):
        raise TemplateLimitError("a format width or precision of a million or more is refused")


def _check_arguments(name: str, args: Iterable[Any], kwargs: Mapping[str, Any]) -> None:
    for value in [*args, *kwargs.values()]:
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_VALUE:
            raise TemplateLimitError(f"{name}() got the argument {value:,}, above the limit of {MAX_VALUE:,}")


def _check_expansion(name: str, subject: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    """Pre-compute the size of the string operations that multiply their input."""
    if not isinstance(subject, str):
        return
    if name == "replace" and len(args) >= 2 and isinstance(args[0], str) and isinstance(args[1], str):
        count = subject.count(args[0]) if args[0] else len(subject) + 1
        _check_size_estimate(len(subject) + count * (len(args[1]) - len(args[0])), name)
    elif name == "indent":
        width = args[0] if args else kwargs.get("width", 4)
        width = len(width) if isinstance(width, str) else width
        if isinstance(width, int):
            _check_size_estimate(len(subject) + (subject.count("\n") + 1) * width, name)
    elif name in ("format", "__mod__") and _FORMAT_WIDTH.search(subject):
        raise TemplateLimitError("a format width or precision of a million or more is refused")


def _check_size_estimate(size: int, name: str) -> None:
    if size > MAX_VALUE:
        raise TemplateLimitError(f"{name} would build a value of {size:,} items (the limit is {MAX_VALUE:,})")


def _limited_filter(name: str, function: Any) -> Any:
    injects = hasattr(function, "jinja_pass_arg")  # @pass_context & co. get that object first

    def run(*args: Any, **kwargs: Any) -> Any:
        _step()
        head, values = (args[:1], args[1:]) if injects else ((), args)
        subject = values[0] if values else None
        _check_arguments(name, values[1:], kwargs)
        _check_expansion(name, subject, tuple(values[1:]), kwargs)
        if name == "join" and subject is not None and not isinstance(subject, str):
            items = list(subject)
            separator = values[1] if len(values) > 1 else kwargs.get("d", "")
            total = sum(len(str(i)) for i in items) + len(str(separator)) * max(0, len(items) - 1)
            _check_size_estimate(total, name)
            values = (items, *values[1:])
        return _check_size(function(*head, *values, **kwargs), f"the filter {name}")

    if injects:
        run.jinja_pass_arg = function.jinja_pass_arg  # type: ignore[attr-defined]
    return run


def _limited_loop(iterable: Any) -> Iterator[Any]:
    for item in iterable:
        _step()
        yield item


def _limited_concat(*parts: Any) -> str:
    texts = [str(p) for p in parts]
    _check_size_estimate(sum(map(len, texts)), "the ~ operator")
    return "".join(texts)


class _GuardLoopsAndConcat(NodeTransformer):
    """Route every ``for`` loop's iterable and every ``~`` through the limited helpers above."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = nodes.Call(nodes.Name("__limited_loop", "load"), [node.iter], [], None, None)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        return nodes.Call(nodes.Name("__limited_concat", "load"), list(node.nodes), [], None, None)


class LimitedSandbox(ImmutableSandboxedEnvironment):
    """``ImmutableSandboxedEnvironment`` plus limits on time, loop steps and value sizes."""

    intercepted_binops = frozenset({"**", "*", "+", "%"})

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.globals.pop("lipsum", None)  # generates arbitrary amounts of text; no prompt needs it
        self.globals["__limited_loop"] = _limited_loop
        self.globals["__limited_concat"] = _limited_concat
        self.filters = {name: _limited_filter(name, f) for name, f in self.filters.items()}

    def call_binop(self, context: Any, operator_name: str, left: Any, right: Any) -> Any:
        _step()
        _check_binop(operator_name, left, right)
        return _check_size(super().call_binop(context, operator_name, left, right), f"the {operator_name} operator")

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        _step()
        name = getattr(__obj, "__name__", "a function")
        if __obj is not _limited_loop and __obj is not _limited_concat:
            _check_arguments(name, args, {k: v for k, v in kwargs.items() if not k.startswith("_")})
            bound = getattr(__obj, "__wrapped__", __obj)  # the sandbox wraps str.format at attribute access
            _check_expansion(name, getattr(bound, "__self__", None), args, kwargs)
        return _check_size(super().call(__context, __obj, *args, **kwargs), f"{name}()")

    def parse_limited(self, source: str) -> Any:
        """Parse ``source`` (refusing what would load other templates) and guard its loops and
        concatenations."""
        tree = self.parse(source)
        for kind, tag in ((nodes.Include, "include"), (nodes.Import, "import"), (nodes.FromImport, "from"),
                          (nodes.Extends, "extends")):  # fmt: skip
            if tree.find(kind) is not None:
                raise TemplateError(
                    f"{{% {tag} %}} is not available in prompt templates (there are no other templates to "
                    "load); write the text inline"
                )
        return _GuardLoopsAndConcat().visit(tree)


ENVIRONMENT = LimitedSandbox(undefined=StrictUndefined, keep_trailing_newline=True, autoescape=False)


def render_limited(template: Any, fields: Mapping[str, Any]) -> str:
    """Render a template compiled in :data:`ENVIRONMENT` within the time, step and output limits."""
    token = _budget.set(_Budget(deadline=time.monotonic() + MAX_SECONDS))
    try:
        pieces, length = [], 0
        for piece in template.generate(**fields):
            length += len(piece)
            if length > MAX_OUTPUT:
                raise TemplateLimitError(f"the rendered template is longer than {MAX_OUTPUT:,} characters")
            pieces.append(piece)
        return "".join(pieces)
    except (MemoryError, OverflowError, RecursionError) as exc:
        raise TemplateLimitError(f"the template exhausted a resource ({type(exc).__name__}: {exc})") from None
    finally:
        _budget.reset(token)
