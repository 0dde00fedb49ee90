"""The mutants of one source file: small, plausible slips in the code that decides.

Operators: a comparison flipped at its boundary or negated, `and`/`or` swapped, a `not` removed,
a `raise` removed, a returned value replaced by `None`, a number one off (a boolean flipped),
`min`/`max` swapped. Annotations, docstrings, `assert`s (type narrowing here) and `TYPE_CHECKING`
blocks are left alone.
"""

from __future__ import annotations

import ast
from collections import Counter
from dataclasses import dataclass

_COMPARE_SWAPS: dict[type[ast.cmpop], tuple[type[ast.cmpop], ...]] = {
    ast.Lt: (ast.LtE, ast.GtE),
    ast.LtE: (ast.Lt, ast.Gt),
    ast.Gt: (ast.GtE, ast.LtE),
    ast.GtE: (ast.Gt, ast.Lt),
    ast.Eq: (ast.NotEq,),
    ast.NotEq: (ast.Eq,),
    ast.Is: (ast.IsNot,),
    ast.IsNot: (ast.Is,),
    ast.In: (ast.NotIn,),
    ast.NotIn: (ast.In,),
}


@dataclass(frozen=True, slots=True)
class Mutant:
    """One changed span: `source[start:end]` (UTF-8 byte offsets) becomes `replacement`."""

    path: str
    line: int
    end_line: int
    start: int
    end: int
    replacement: str
    operator: str
    scope: str
    change: str
    key: str

    def apply(self, source: str) -> str:
        data = source.encode()
        return (data[: self.start] + self.replacement.encode() + data[self.end :]).decode()


@dataclass(frozen=True, slots=True)
class _Edit:
    node: ast.AST
    replacement: str
    operator: str
    change: str


class _Collector(ast.NodeVisitor):
    def __init__(self) -> None:
        self.edits: list[tuple[str, _Edit]] = []
        self._scope: list[str] = []

    def _add(self, node: ast.AST, new: str, operator: str, before: str, after: str) -> None:
        scope = ".".join(self._scope) or "<module>"
        self.edits.append((scope, _Edit(node, new, operator, f"{before} -> {after}")))

    def _expression(self, node: ast.expr, new: ast.expr, operator: str) -> None:
        after = ast.unparse(new)
        # Parenthesised so the replacement binds exactly as the node it stands for.
        self._add(node, f"({after})", operator, ast.unparse(node), after)

    # Scopes: what a mutant's key names, so keys survive edits elsewhere in the file.
    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self._function(node)

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> None:
        self._function(node)

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        for default in [*node.args.defaults, *node.args.kw_defaults]:
            if default is not None:
                self.visit(default)
        for decorator in node.decorator_list:
            self.visit(decorator)
        self._scope.append(node.name)
        for statement in _without_docstring(node.body):
            self.visit(statement)
        self._scope.pop()

    def visit_Lambda(self, node: ast.Lambda) -> None:
        self._scope.append("<lambda>")
        self.visit(node.body)
        self._scope.pop()

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self._scope.append(node.name)
        for statement in _without_docstring(node.body):
            self.visit(statement)
        self._scope.pop()

    # Left alone: annotations, asserts (type narrowing), TYPE_CHECKING imports, f-string parts.
    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        if node.value is not None:
            self.visit(node.value)

    def visit_Assert(self, node: ast.Assert) -> None:
        return

    def visit_If(self, node: ast.If) -> None:
        if isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            return
        self.generic_visit(node)

    def visit_JoinedStr(self, node: ast.JoinedStr) -> None:
        return

    def visit_Expr(self, node: ast.Expr) -> None:
        if not (isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)):
            self.generic_visit(node)

    # The operators.
    def visit_Compare(self, node: ast.Compare) -> None:
        for index, op in enumerate(node.ops):
            for swap in _COMPARE_SWAPS.get(type(op), ()):
                ops = list(node.ops)
                ops[index] = swap()
                new = ast.Compare(left=node.left, ops=ops, comparators=node.comparators)
                self._expression(node, new, "compare")
        self.generic_visit(node)

    def visit_BoolOp(self, node: ast.BoolOp) -> None:
        other: ast.boolop = ast.Or() if isinstance(node.op, ast.And) else ast.And()
        self._expression(node, ast.BoolOp(op=other, values=node.values), "boolean")
        self.generic_visit(node)

    def visit_UnaryOp(self, node: ast.UnaryOp) -> None:
        if isinstance(node.op, ast.Not):
            self._expression(node, node.operand, "not")
        self.generic_visit(node)

    def visit_Raise(self, node: ast.Raise) -> None:
        self._add(node, "pass", "raise", ast.unparse(node), "pass")
        self.generic_visit(node)

    def visit_Return(self, node: ast.Return) -> None:
        value = node.value
        if value is not None and not (isinstance(value, ast.Constant) and value.value is None):
            self._add(node, "return None", "return", ast.unparse(node), "return None")
        self.generic_visit(node)

    def visit_Constant(self, node: ast.Constant) -> None:
        value = node.value
        if isinstance(value, bool):
            self._expression(node, ast.Constant(not value), "constant")
        elif isinstance(value, int | float):
            for changed in (value + 1, value - 1):
                self._expression(node, ast.Constant(changed), "constant")

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        if isinstance(func, ast.Name) and func.id in ("min", "max"):
            other = "max" if func.id == "min" else "min"
            self._add(func, other, "min/max", func.id, other)
        self.generic_visit(node)


def _without_docstring(body: list[ast.stmt]) -> list[ast.stmt]:
    first = body[0] if body else None
    if (
        isinstance(first, ast.Expr)
        and isinstance(first.value, ast.Constant)
        and isinstance(first.value.value, str)
    ):
        return body[1:]
    return body


def _line_offsets(data: bytes) -> list[int]:
    offsets = [0]
    for index, byte in enumerate(data):
        if byte == 0x0A:
            offsets.append(index + 1)
    return offsets


def mutants_of(path: str, source: str) -> list[Mutant]:
    """Every mutant of `source` (the file at `path`, repository-relative), in source order."""
    tree = ast.parse(source, filename=path)
    collector = _Collector()
    collector.visit(tree)
    offsets = _line_offsets(source.encode())
    seen: Counter[str] = Counter()
    mutants = []
    for scope, edit in collector.edits:
        node = edit.node
        line, end_line = node.lineno, node.end_lineno  # type: ignore[attr-defined]
        start = offsets[line - 1] + node.col_offset  # type: ignore[attr-defined]
        end = offsets[end_line - 1] + node.end_col_offset  # type: ignore[attr-defined]
        key = f"{scope}: {edit.change}"
        seen[key] += 1
        if seen[key] > 1:
            key = f"{key} #{seen[key]}"
        mutants.append(
            Mutant(
                path,
                line,
                end_line,
                start,
                end,
                edit.replacement,
                edit.operator,
                scope,
                edit.change,
                key,
            )
        )
    mutants.sort(key=lambda m: (m.start, m.end))
    return mutants
