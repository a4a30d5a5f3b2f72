"""The initializer arguments of a generated Keras layer (ops.init's rules as Keras
initializers) and the module constants that hold their configs, one per distinct config, as
keras.applications' EfficientNet defines CONV_KERNEL_INITIALIZER."""

from __future__ import annotations

from typing import Any

from archc import ops
from archc.code import flat
from archc.errors import SpecError
from archc.ir.graph import Graph
from archc.ops import init


class Initializers:
    """A module's initializer arguments: `constants` (name -> config) it defines, and what the
    arguments need (`helpers`: the torch_bias_initializer helper; `needs_math`)."""

    def __init__(self, graph: Graph):
        self.graph = graph
        self.constants: dict[str, dict[str, Any]] = {}  # module-level initializer configs
        self.helpers: set[str] = set()
        self.needs_math = False

    def __call__(
        self, kind: str, rules: init.Init, a: dict[str, str], in_ch: str, where: Any, owner: str,
    ) -> tuple[tuple[str, str], ...]:  # fmt: skip
        """A layer's initializer arguments (ops.init): Keras' own defaults left out; a config
        that is its kind's rule in `defaults:` is a module constant (CONV_KERNEL_INITIALIZER, as
        keras.applications' EfficientNet), another one a constant named after its layer."""
        op = ops.KINDS[kind]
        out = []
        for role, tensor in op.TENSORS.items():
            arg = tensor.keras_arg
            if tensor.switch and a.get(tensor.switch) == "False":
                continue
            rule = getattr(rules, role)
            problem = init.keras_problem(rule)
            if problem:
                raise SpecError(f"{kind} init {role}: {problem}", where)
            keras_rule = init.swap_fans(rule) if op.KERAS_FANS == "swapped" and role == "weight" else rule
            source = init.keras_initializer(keras_rule, role, kind, op.fan_in(a, in_ch), op.group_fan_out(a))
            if op.KERAS_FANS is False and role == "weight" and source is not None:  # Keras' fans are not PyTorch's
                source = init.explicit_initializer(rule, op.fan_in(a, in_ch), op.fan_out(a, in_ch)) or source
            if source is None:
                continue
            if isinstance(source, dict):
                source = self._constant(source, kind, role, arg, rule, owner)
            elif isinstance(source, str) and source.startswith(init.KERAS_HELPER):
                self.helpers.add(init.KERAS_HELPER)
                self.needs_math = True
            self.needs_math |= "math." in flat(source)
            out.append((arg, source))
        return tuple(out)

    def _constant(self, config: dict[str, Any], kind: str, role: str, arg: str, rule: init.Rule, owner: str) -> str:
        """The module constant holding an initializer config, one per distinct config (a
        config that one holds already: that one, as keras.applications' EfficientNet gives its
        depthwise convs CONV_KERNEL_INITIALIZER). A kind's rule in `defaults:` is named after
        its kind (CONV_KERNEL_INITIALIZER), or after its argument alone where the defaults of
        several kinds of the model give it (KERNEL_INITIALIZER); another after its layer."""
        held = next((name for name, other in self.constants.items() if other == config), None)
        if held:
            return held
        section = init.section(kind)
        if rule == getattr(self.graph.init(section), role):
            kinds = {init.section(n.op.kind) for n in self.graph.nodes if n.op.TENSORS}
            tensors = {k: ops.KINDS[k].TENSORS.get(role) for k in kinds}
            giving = [k for k, t in tensors.items() if t and t.keras_arg == arg and init.keras_initializer(getattr(self.graph.init(k), role), role, k, None) == config]
            base = "" if len(giving) > 1 else f"{section.upper()}_"
        else:
            base = f"{owner.upper()}_"
        name, n = f"{base}{arg.upper()}", 2
        while name in self.constants:
            name, n = f"{base}{n}_{arg.upper()}", n + 1
        self.constants[name] = config
        return name
