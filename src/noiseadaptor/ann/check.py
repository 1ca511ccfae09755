"""check(model): will this model convert, and what must change? Every operation of the model's traced graph
with its fate under `prepare` (kept, rewritten, refused), all of them at once, where prepare stops at the
first refusal. The same classification as prepare (`preparation.classify`): what check says is what
prepare does.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from torch import fx, nn

from .preparation import _trace, _where, classify

QUANTIZER = "a quantizer"  # what a ReLU (or a clip) is rewritten into
MAX_POOL_COST = (
    "measured on the embedded digits (small CNN trained with max-pooling, seed 0): 99.4 % float, 91.4 % right "
    "after the swap and scale initialisation (BatchNorm re-estimated), before QAT recovers it, by "
    "`pytest tests/test_calibrate.py -k trained -s`"
)


@dataclass(frozen=True)
class Operation:
    """One node of the traced model: where it is, what it is, and its fate.
    fate: "kept" (runs at every step as in the ANN), "rewritten" (`how` says into what) or "refused" (`how`
    says why, and what to use instead)."""

    where: str
    op: str
    fate: str
    how: str = ""


@dataclass
class CheckReport:
    """`check`'s answer: `operations` in graph order; `converts` when none is refused."""

    model: str
    operations: list[Operation] = field(default_factory=list)

    @property
    def converts(self) -> bool:
        """No operation refused, and at least one ReLU (or clip) to become a quantizer."""
        return not self.refused and any(o.how.startswith(QUANTIZER) for o in self.rewritten)

    @property
    def refused(self) -> list[Operation]:
        return [o for o in self.operations if o.fate == "refused"]

    @property
    def rewritten(self) -> list[Operation]:
        return [o for o in self.operations if o.fate == "rewritten"]

    def verdict(self) -> str:
        """'converts', 'converts with rewrites' or 'refused: <first reason>'."""
        if self.refused:
            first = self.refused[0]
            return f"refused: {first.op} at {first.where}: {first.how}"
        if not self.converts:
            return "refused: the model has no ReLU to replace: these methods convert ReLU networks"
        plain = all(o.how == QUANTIZER for o in self.rewritten)  # ReLUs only: classify adds no note to them
        return "converts" if plain else "converts with rewrites"

    def __str__(self) -> str:
        """The operations grouped by (fate, op, how), with their counts; each refusal in full."""
        lines = [f"{self.model}: {self.verdict()}"]
        for fate in ("kept", "rewritten", "refused"):
            groups = Counter((o.op, o.how) for o in self.operations if o.fate == fate)
            if not groups:
                continue
            lines.append(f"\n{fate} ({sum(groups.values())}):")
            for (op, how), n in groups.items():
                where = [o.where for o in self.operations if (o.fate, o.op, o.how) == (fate, op, how)]
                at = f" (at {where[0]}{', ...' if n > 1 else ''})" if fate == "refused" else ""
                lines.append(f"  {n:>4} x {op}{at}" + (f": {how}" if how else ""))
        return "\n".join(lines)


def check(model: nn.Module, name: str | None = None) -> CheckReport:
    """Trace `model` once (as `prepare` does) and give every operation its fate: kept as is (conv, linear,
    BatchNorm folded, average pool, add, flatten, ...), rewritten (each ReLU call, `F.relu`, a clip to
    [0, b] such as ReLU6, Hardtanh(0, b) or clamp(x, 0, b) -> its own quantizer, the bound becoming the
    learned threshold; max-pool -> average pool), or refused with the reason and what to use instead. A
    model that torch.fx cannot trace is refused with fx's reason. The model is not changed."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"check() expects a torch.nn.Module, got {type(model).__name__}")
    report = CheckReport(name or type(model).__name__)
    try:
        graph_module = _trace(model)
    except TypeError as err:
        report.operations.append(Operation(type(model).__name__, "forward", "refused", str(err)))
        return report
    for node in graph_module.graph.nodes:
        if node.op in ("placeholder", "output", "get_attr"):
            continue
        role, how = classify(graph_module, node)
        fate, how = {
            "relu": ("rewritten", QUANTIZER + (f"; {how}" if how else "")),
            "max_pool": ("rewritten", f"an average pool of the same window ({MAX_POOL_COST})"),
            "linear": ("kept", how),
        }.get(role, ("refused", how))
        report.operations.append(Operation(_place(node), _op_name(graph_module, node), fate, how))
    return report


def _op_name(gm: fx.GraphModule, node: fx.Node) -> str:
    if node.op == "call_module":
        return type(gm.get_submodule(node.target)).__name__
    if node.op == "call_function":
        return getattr(node.target, "__name__", str(node.target))
    return f".{node.target}()"


def _place(node: fx.Node) -> str:
    return node.target if node.op == "call_module" else _where(node)
