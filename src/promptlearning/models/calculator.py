"""A calculator the model calls while it decodes (GSM8K's ``<<48/2=24>>`` annotations, Cobbe et al. 2021).

When the text a model has written so far ends in an open call ``<<expression=``, the decoding engine
asks :func:`calculator_completion` for the rest, forces those tokens (``24>>``) and lets the model go
on. The expression is arithmetic only: numbers (``1,000`` and ``$5`` read as 1000 and 5), ``+ - * /``
(``×``, ``÷`` too), parentheses and signs, evaluated exactly with fractions.

Nothing is evaluated as Python: the expression is parsed with :mod:`ast` and only number literals and
those operators are walked (a hand-written walker: no library here restricts Python's grammar to
exact arithmetic with bounds). Everything is bounded before any work: the expression's length, each
number's digits, every intermediate value's size. An expression that breaks a rule (``__import__``,
``9**9**9``, ``1/0``, a 10,000-digit number, unbalanced brackets) gets no result: the model then
writes the answer itself.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Sequence
from fractions import Fraction

MAX_EXPRESSION_CHARS = 120
MAX_NUMBER_DIGITS = 24
MAX_MAGNITUDE = Fraction(10**18)
MAX_DENOMINATOR = 10**12
DECIMALS = 4  # a non-integer result is written with at most this many decimals (GSM8K writes 0.25, 4.8)
OPEN_CALL = re.compile(rf"<<([^<>=\n]{{1,{MAX_EXPRESSION_CHARS}}})=$")
_LEADING_ZEROS = re.compile(r"(?<![\d.])0+(?=\d)")
_SPELLINGS = str.maketrans({"×": "*", "÷": "/", "−": "-", "$": None, ",": None, " ": None})
_OPERATORS = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b,
              ast.Div: lambda a, b: a / b}  # fmt: skip


class CalculatorError(ValueError):
    """An expression the calculator refuses (not arithmetic, too large, undefined)."""


def evaluate(expression: str) -> Fraction:
    """The exact value of an arithmetic expression, or :class:`CalculatorError`."""
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise CalculatorError(f"expressions are at most {MAX_EXPRESSION_CHARS} characters")
    text = expression.translate(_SPELLINGS)
    if not text or not set(text) <= set("0123456789.+-*/()"):
        raise CalculatorError(f"not arithmetic: {expression!r}")
    if any(len(number.replace(".", "")) > MAX_NUMBER_DIGITS for number in re.findall(r"[\d.]+", text)):
        raise CalculatorError(f"numbers are at most {MAX_NUMBER_DIGITS} digits")
    text = _LEADING_ZEROS.sub("", text)  # 007 is 7 (Python's grammar refuses leading zeros)
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError, MemoryError, RecursionError) as exc:
        raise CalculatorError(f"not an expression: {expression!r} ({type(exc).__name__})") from None
    return _value(tree.body)


def _value(node: ast.AST) -> Fraction:
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return _bounded(Fraction(str(node.value)))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        operand = _value(node.operand)
        return -operand if isinstance(node.op, ast.USub) else operand
    if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
        left, right = _value(node.left), _value(node.right)
        if isinstance(node.op, ast.Div) and right == 0:
            raise CalculatorError("division by zero")
        return _bounded(_OPERATORS[type(node.op)](left, right))
    raise CalculatorError(f"only numbers, + - * / and brackets are allowed, not {type(node).__name__}")


def _bounded(value: Fraction) -> Fraction:
    if abs(value) > MAX_MAGNITUDE or value.denominator > MAX_DENOMINATOR:
        raise CalculatorError("the value is too large")
    return value


def format_number(value: Fraction) -> str:
    """``24``, ``0.25``, ``0.3333``: an integer as it is, else at most :data:`DECIMALS` decimals."""
    if value.denominator == 1:
        return str(value.numerator)
    text = f"{float(round(value, DECIMALS)):.{DECIMALS}f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def calculator_completion(text: str) -> str | None:
    """What the calculator writes after ``text`` (``"24>>"`` after ``"… <<48/2="``): ``None`` unless
    ``text`` ends in an open call it can evaluate."""
    if not text.endswith("="):
        return None
    match = OPEN_CALL.search(text)
    if match is None:
        return None
    try:
        return format_number(evaluate(match.group(1))) + ">>"
    except CalculatorError:
        return None


def continuation_ids(
    encode: Callable[[str], list[int]], decode: Callable[[list[int]], str], previous: Sequence[int], text: str
) -> list[int]:
    """Tokens that continue ``previous`` (ending in ``=``) with exactly ``text``. SentencePiece-style
    tokenizers (Llama-2's) encode a text alone as a new word (``▁24``: "= 24"), so the text is encoded
    after an ``=`` and the tokens up to it dropped, kept only if the decoded whole reads as it should."""
    context = list(previous[-8:])
    ids = encode("=" + text)
    for k in range(1, len(ids)):
        if decode(ids[:k]).strip() == "=":
            if decode(context + ids[k:]) == decode(context) + text:
                return ids[k:]
            break
    return encode(text)
