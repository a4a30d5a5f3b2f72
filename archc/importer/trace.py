"""A module tree -> a tree of entries: layers, groups (nn.Sequential) and block instances.

Each user module (a class that is neither a torch.nn layer archc has nor a plain
nn.Sequential) is traced with torch.fx, its child modules kept as calls (module-level leaf
tracing), so its `forward` becomes a list of named entries with their dataflow: `from:`
where an entry does not read the one before it, merges (`add`, `concat`, `multiply`) for
the tensor arithmetic. Names are the module hierarchy's, so the spec's state_dict keys are
the original's.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Any, Union

from archc.importer import listflow, lists, patterns, radix, sizes, stacks, taps
from archc.importer.ops import (
    ACTIVATION_LAYERS,
    Unsupported,
    function,
    is_container,
    leaf,
    norm_act,
)


@dataclass
class Layer:
    kind: str
    args: dict[str, Any]


@dataclass
class Merge:
    kind: str  # add, concat, multiply
    inputs: list[str]


@dataclass
class Group:
    entries: list[Entry]
    dense: bool = False  # each entry reads the concatenation of the input and the entries before
    parallel: bool = False  # an nn.ModuleList: unnamed paths on one input, concatenated
    modules: bool = False  # a `modules:` container: numbered entries that read earlier ones by number


@dataclass
class Instance:
    """One module of a user class: its traced entries, constructor arguments, input channels."""

    cls: type
    path: str
    init: dict[str, Any]
    in_channels: int
    entries: list[Entry]
    kind: str = ""  # set when kinds are formed
    params: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)  # the model's, where its forward returns a dict
    inputs: dict[str, int] = field(default_factory=dict)  # several named inputs -> their channels (LRASPPHead's low, high)
    reads: tuple[int, ...] | None = None  # called with a list: the elements it reads (see listflow.py)
    passes: tuple[int | None, ...] = ()  # and what it returns: its own tensor (None) or its input k, per element


Node = Union[Layer, Merge, Group, Instance]


@dataclass
class Entry:
    name: str | None  # None: numbered by position (an nn.Sequential child)
    node: Node
    src: str | tuple[str, ...] | None = None  # `from:`; None reads the entry before; a tuple: a block's several inputs
    channels: int | None = None  # the channels it reads (a module's, from a forward pass)


class Tracer:
    """Builds the entry tree of a model; `shapes` maps id(module) -> its input's shape."""

    def __init__(self, model: Any, init: dict[int, dict[str, Any]], input_shape: tuple[int, ...]):
        import torch

        self.init = init
        self.shapes: dict[int, tuple[int, ...]] = {}
        self.named_inputs: dict[int, dict[str, tuple[int, ...]]] = {}  # a module called with a dict of maps
        self.tensor_inputs: set[int] = set()  # the modules called with one tensor
        self.size_tests: dict[str, tuple[str, tuple[int, ...], list[str]]] = {}  # path -> class, input, tests (sizes.py)
        self.flattened: dict[int, int] = {}  # a module that reads stacked paths -> their number (archc.importer.stacks)
        self.leaves: dict[int, list[tuple[int, ...]]] = {}  # the shapes of all tensors a module is called with
        self.returns: dict[int, int] = {}  # a module that returns a list of maps: its length
        self.list_calls: dict[int, listflow.Call] = {}  # modules traced as a call with lists or several tensors gives them
        hooks = [m.register_forward_pre_hook(self._hook) for m in model.modules()]
        hooks += [m.register_forward_pre_hook(listflow.hook(self), with_kwargs=True) for m in model.modules()]
        hooks += [m.register_forward_hook(self._returned) for m in model.modules()]
        try:
            with torch.no_grad():
                model(torch.randn(1, *input_shape))
        except Exception as e:
            raise Unsupported(f"the model does not run on an input of shape {tuple(input_shape)}: {type(e).__name__}: {e}") from None
        finally:
            for h in hooks:
                h.remove()

    def _hook(self, module: Any, args: tuple[Any, ...]) -> None:
        import torch

        if id(module) in self.shapes or not args:
            return
        first = args[0]
        if isinstance(first, torch.Tensor):
            self.shapes[id(module)] = tuple(first.shape[1:])
            self.tensor_inputs.add(id(module))
        elif isinstance(first, (list, tuple)) and first and all(isinstance(t, torch.Tensor) for t in first):
            shape = tuple(first[0].shape[1:])  # read as one concatenation (a dense layer's input)
            self.shapes[id(module)] = (sum(t.shape[1] for t in first), *shape[1:])
        elif isinstance(first, dict) and first and all(isinstance(k, str) and isinstance(t, torch.Tensor) for k, t in first.items()):
            self.named_inputs[id(module)] = {k: tuple(t.shape[1:]) for k, t in first.items()}  # LRASPPHead(features)
            self.shapes[id(module)] = next(iter(self.named_inputs[id(module)].values()))

    def _returned(self, module: Any, args: Any, out: Any) -> None:
        import torch

        if isinstance(out, (list, tuple)) and out and all(isinstance(t, torch.Tensor) for t in out):
            self.returns.setdefault(id(module), len(out))

    def _channels(self, module: Any) -> int | None:
        shape = self.shapes.get(id(module))
        return shape[0] if shape else None

    def describe(self, module: Any, path: str) -> Node:
        try:
            found = leaf(module)
        except Unsupported as e:
            raise Unsupported(f"{path or 'model'}: {e}") from None
        if found is not None:
            return Layer(*found)
        if is_container(module) or _numbered_sequential(module) or taps.layer_getter(module):
            return Group(self._children(module, path))
        if len(list(module.buffers(recurse=False))):
            raise Unsupported(f"{path or 'model'}: {type(module).__name__} holds buffers of its own (not in a submodule)")
        return self._instance(module, path)

    def root(self, model: Any) -> Instance:
        """The model as an instance: its class's traced forward, or a plain nn.Sequential's
        children as its entries. An nn.Sequential (or a subclass that keeps its forward) whose
        children are all numbered (`0.weight`, torchvision's detection trunks) is a numbered
        model: its entries are unnamed, as a spec whose layers are all unnamed numbers them.
        Any other model's children need names, its attributes."""
        import torch.nn as nn

        what = f"model: {type(model).__name__}"
        keys = [k for k, _ in model.named_children() if not k.isidentifier()]
        sequential = isinstance(model, nn.Sequential) and type(model).forward is nn.Sequential.forward
        if keys and sequential and len(keys) == len(list(model.children())) and all(k.isdigit() for k in keys):
            entries = self._children(model, "")  # unnamed (nn.Identity placeholders where numbers are missing)
            return Instance(type(model), "", self.init.get(id(model), {}), self.shapes[id(model)][0], entries)
        if keys:
            shown = ", ".join(keys[:3]) + (", ..." if len(keys) > 3 else "")
            raise Unsupported(
                f"{what} names its own children {shown}, no attributes: a spec numbers the model's modules only "
                f"when all are numbered, an nn.Sequential's (`0.weight`), so no spec has this model's keys `{keys[0]}.*`"
            )
        node = self.describe(model, "")
        if isinstance(node, Group) and not node.dense:  # a plain nn.Sequential: its children, named
            node = Instance(type(model), "", self.init.get(id(model), {}), self.shapes[id(model)][0], node.entries)
        if not isinstance(node, Instance):
            raise Unsupported(f"{what}: a bare {'dense block' if isinstance(node, Group) else 'layer'}; archc import reads a model class's forward")
        return node

    def _children(self, module: Any, path: str) -> list[Entry]:
        entries: list[Entry] = []
        i = 0  # the number of the next child
        for key, child in module.named_children():
            if key.isdigit() and str(int(key)) == key and int(key) > i and all(e.name is None for e in entries):
                # a numbered list with numbers missing (torchvision's SSDlite keeps `block[1:]` of a
                # block: keys 1, 2, 3): nn.Identity placeholders (no weights) keep the numbers
                entries += [Entry(None, Layer("identity", {})) for _ in range(int(key) - i)]
                i = int(key)
            if key != str(i) and key[:1].isdigit():
                raise Unsupported(f"{_join(path, key)}: an nn.Sequential's child numbered {key} at position {i}, where a spec's list numbers entries by position")
            name = None if key == str(i) else key
            i += 1
            layers = norm_act(child)
            if layers is not None:  # timm's BatchNormAct2d, GroupNormAct: its norm, then its activation
                if name is None and len(layers) > 1:
                    raise Unsupported(f"{_join(path, key)}: {type(child).__name__} in a numbered nn.Sequential (its activation would shift the numbers)")
                entries.append(Entry(name, Layer(*layers[0]), channels=self._channels(child)))
                entries.extend(Entry(f"{key}_act", Layer(*layer)) for layer in layers[1:])
                continue
            entries.append(Entry(name, self.describe(child, _join(path, key)), channels=self._channels(child)))
        return entries

    def _instance(self, module: Any, path: str) -> Instance:
        what = f"{path or 'model'}: {type(module).__name__}"
        if id(module) not in self.shapes:
            raise Unsupported(f"{what} is never called by its parent's forward")
        try:
            settings = _settings(module)
            tracer = sizes.tracer(self.shapes[id(module)] if id(module) in self.tensor_inputs and id(module) not in self.list_calls else None)
            graph = tracer.trace(module, concrete_args=listflow.concrete(module, self.list_calls.get(id(module)), settings))  # size tests at this input
        except Exception as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise Unsupported(f"{what}: forward cannot be traced ({first})") from None
        call = self.list_calls.get(id(module))
        reads, passes = listflow.outputs(graph, what, id(module) in self.returns, listflow.leaf_names(call)) if call else (None, ())
        _drop_guards(graph, settings or call)  # type: ignore[arg-type]
        sizes.fold(graph, tracer)  # a size a call takes (F.pad's amounts): its number at this input
        if tracer.tests:
            sizes.prune(graph)
            self.size_tests[path] = (type(module).__name__, self.shapes[id(module)], tracer.tests)
        if id(module) in self.flattened:  # SKNet's attention: it reads its parent's stacked paths
            self.shapes[id(module)] = stacks.flatten_child(module, graph, self.shapes[id(module)])
        _container_calls(module, graph)
        dense = self._dense(module, path, graph)
        if dense is not None:
            return dense  # type: ignore[return-value]
        patterns.rewrite(module, graph, self.shapes[id(module)])  # a written-out channel shuffle, chunk
        made = stacks.rewrite(module, graph, self.shapes[id(module)])  # paths stacked on a new axis (SKNet)
        radix.rewrite(module, graph, self.shapes[id(module)])  # split attention's radix sums
        self.flattened.update({id(module.get_submodule(t)): n for t, n in stacks.finish(graph, made).items()})
        outputs: dict[str, str] = {}
        entries = self._entries(module, path, graph, what, outputs)
        shape = self.shapes[id(module)]
        if outputs and path:
            raise Unsupported(f"{what}: forward returns a dict, which archc's blocks do not (a model's may)")
        named = {k: s[0] for k, s in self.named_inputs.get(id(module), {}).items()}
        found = Instance(type(module), path, self.init.get(id(module), {}), shape[0], entries, outputs=outputs, inputs=named)
        found.reads, found.passes = reads, passes
        return found

    def _dense(self, module: Any, path: str, graph: Any) -> Group | None:
        """torchvision's _DenseBlock: features = [x]; each layer reads the list and appends its
        output; the result is torch.cat(features, 1): a dense stage of its layers."""
        import torch

        nodes = [n for n in graph.nodes if n.op not in ("placeholder", "output")]
        inputs = [n for n in graph.nodes if n.op == "placeholder"]
        calls = [n for n in nodes if n.op == "call_module"]
        if len(inputs) != 1 or not calls or len(nodes) != len(calls) + 1:
            return None
        seen = [inputs[0]]
        for call in calls:
            if len(call.args) != 1 or not isinstance(call.args[0], (list, tuple)) or list(call.args[0]) != seen:
                return None
            seen.append(call)
        last = nodes[-1]
        if last.op != "call_function" or last.target is not torch.cat or list(last.args[0]) != seen:
            return None
        if (last.args[1] if len(last.args) > 1 else last.kwargs.get("dim")) != 1:
            return None
        entries = []
        for call in calls:
            child = module.get_submodule(str(call.target))
            entries.append(Entry(str(call.target), self.describe(child, _join(path, str(call.target))), channels=self._channels(child)))
        return Group(entries, dense=True)

    def _parallel(self, module: Any, path: str, graph: Any, first: Any) -> tuple[Entry, Any, list[Any]] | None:
        """An nn.ModuleList `convs` whose modules are each called once, in order, on one
        tensor, their outputs concatenated on the channels in that order and read by
        nothing else: (its entry, the torch.cat node, the calls); None for anything else."""
        import torch
        import torch.nn as nn

        head = str(first.target).split(".")[0]
        paths = module.get_submodule(head)
        if type(paths) is not nn.ModuleList:
            return None
        prefix = f"{head}."
        calls = [n for n in graph.nodes if n.op == "call_module" and str(n.target).startswith(prefix)]
        if [str(c.target) for c in calls] != [f"{prefix}{k}" for k in range(len(paths))]:
            return None
        if any(len(c.args) != 1 or c.kwargs or c.args[0] is not first.args[0] or len(c.users) != 1 for c in calls):
            return None
        (cat,) = calls[0].users
        if cat.target not in (torch.cat, torch.concat) or function(cat.target, tuple(cat.args), dict(cat.kwargs)) != ("concat", {}):
            return None
        if not isinstance(cat.args[0], (list, tuple)) or list(cat.args[0]) != calls:
            return None
        entries = []
        for k, child in enumerate(paths):
            entries.append(Entry(None, self.describe(child, _join(path, f"{head}.{k}")), channels=self._channels(child)))
        return Entry(head, Group(entries, parallel=True), channels=self._channels(paths[0])), cat, calls

    def _entries(self, module: Any, path: str, graph: Any, what: str, outputs: dict[str, str]) -> list[Entry]:
        import torch.fx

        names: dict[Any, str] = {}  # fx node -> the entry name that holds its tensor
        entries: list[Entry] = []
        used: set[str] = {n for n, _ in module.named_children()}
        called: dict[str, Any] = {}
        previous = "input"
        scales: dict[Any, tuple[str, bool]] = {}  # fx node -> (parameter, reshaped from a vector)
        scaled: set[str] = set()
        skipped: set[str] = set()  # the paths of a module list, read as one entry
        skipped_nodes: set[Any] = set()
        tapped: dict[Any, dict[str, str]] = {}  # a layer getter's call -> tap name -> the spec's name
        sizes: dict[Any, tuple[Any, Any]] = {}  # x.shape, x.shape[-2:] -> (x, where the items start)
        flow: dict[Any, tuple[str, ...]] = {}  # a list a module returned -> the names of its elements (listflow.py)
        placeholders = [n for n in graph.nodes if n.op == "placeholder"]
        for extra in placeholders[1:]:
            if extra.users and "archc_input" not in extra.meta:
                raise Unsupported(f"{what}: forward reads several inputs ({', '.join(p.target for p in placeholders)})")

        def tensor_inputs(node: Any) -> list[Any]:
            found: list[Any] = []
            torch.fx.node.map_arg((node.args, node.kwargs), lambda n: found.append(n))
            return found

        def name_of(node: Any) -> str:
            if node not in names:
                raise Unsupported(f"{what}: forward reads {node.name}, which archc cannot express")
            return names[node]

        def fresh(base: str) -> str:
            name, k = base, 1
            while name in used:
                name, k = f"{base}{k}", k + 1
            used.add(name)
            return name

        def add(entry: Entry, node: Any, inputs: list[Any]) -> None:
            nonlocal previous
            if len(inputs) == 1 and not isinstance(entry.node, Merge):
                source = name_of(inputs[0])
                # explicit where the source has a name (the rendering leaves out a `from:` that
                # reads the entry before), so that instances align however their forward orders calls
                entry.src = None if source == previous and not _named(source) else source
            entries.append(entry)
            names[node] = entry.name  # type: ignore[assignment]
            previous = entry.name  # type: ignore[assignment]

        for node in graph.nodes:
            if node.op == "placeholder":
                if "archc_input" in node.meta:  # an element of a list it is called with (listflow.py)
                    names[node] = used.add(node.meta["archc_input"]) or node.meta["archc_input"]  # type: ignore[func-returns-value]
                elif node is placeholders[0] and id(module) not in self.named_inputs:
                    names[node] = "input"
                continue
            if node.op == "call_function" and node.target is operator.getitem and node.args[0] is placeholders[0] and id(module) in self.named_inputs:
                key = node.args[1]  # input["low"]: the block's input `low`
                if key not in self.named_inputs[id(module)] or not str(key).isidentifier():
                    raise Unsupported(f"{what}: forward reads the input {key!r} of {sorted(self.named_inputs[id(module)])}")
                names[node] = used.add(key) or key  # type: ignore[func-returns-value]
                continue
            if node.op == "output":
                result = node.args[0]
                if isinstance(result, dict) and result and all(isinstance(k, str) and isinstance(v, torch.fx.Node) for k, v in result.items()):
                    outputs.update({k: name_of(v) for k, v in result.items()})  # {"out": ...}: the model's `outputs:`
                    continue
                if not isinstance(result, torch.fx.Node) or name_of(result) != previous:
                    raise Unsupported(f"{what}: forward returns something other than its last tensor")
                continue
            if node in skipped_nodes:
                continue
            size = taps.size_of(node, sizes)
            if size is not None:
                sizes[node] = size
                continue
            if node.op == "call_function" and node.target is operator.getitem and node.args[0] in flow and type(node.args[1]) is int:
                names[node] = flow[node.args[0]][node.args[1]]  # x[0] of a list a block returned
                continue
            if node.op == "call_function" and node.target is operator.getitem and node.args[0] in tapped:
                key = node.args[1]
                if key not in tapped[node.args[0]]:
                    raise Unsupported(f"{what}: forward reads the tap {key!r} of {node.args[0].target}, which returns {sorted(tapped[node.args[0]])}")
                names[node] = tapped[node.args[0]][key]
                continue
            resized = taps.resize(node, sizes, len(self.shapes[id(module)]) + 1)
            if resized is not None:
                like, mode = resized
                add(Entry(fresh("resize"), Layer("resize", {"like": name_of(like), "mode": mode})), node, [node.args[0] if node.args else node.kwargs["input"]])
                continue
            inputs = tensor_inputs(node)
            if node.op == "call_module":
                target = str(node.target)
                if target in skipped:
                    continue
                if "." in target and target.split(".")[0] not in called:
                    found = self._parallel(module, path, graph, node)
                    if found is not None:  # torchvision's ASPP: torch.cat([conv(x) for conv in self.convs], 1)
                        entry, cat, calls = found
                        called[entry.name] = entry.node  # type: ignore[index]
                        skipped.update(str(c.target) for c in calls)
                        add(entry, cat, inputs)
                        skipped_nodes.add(cat)
                        continue
                if "." in target and lists.entry_call(module, target) is not None:  # Res2Net's convs[i], one at a time
                    lists.check_order(graph, module, what)
                    called[target.split(".")[0]] = module.get_submodule(target.split(".")[0])
                elif "." in target:
                    raise Unsupported(f"{what}: forward calls {target}, a module inside a child")
                child = module.get_submodule(target)
                if _append_list(child, node):  # VoVNet's OSA list: its entries in a chain, then one concat
                    x, listed = node.args
                    called[target] = child
                    add(Entry(target, Group(self._children(child, _join(path, target))), channels=self._channels(child)), node, [x])
                    n = len(child)
                    parts = [name_of(t) for t in listed] + [f"{target}.{k}" for k in range(n - 1)] + [target]
                    add(Entry(fresh("cat"), Merge("concat", parts)), node, [*listed, node])
                    continue
                found = listflow.call(self, node, child, _join(path, target), target, flow, name_of)
                if found is not None:  # a list of tensors in or out (timm's SelecSLS)
                    listed_entry, elements, alias = found
                    called[target] = child
                    if listed_entry is None:
                        names[node] = alias
                        continue
                    entries.append(listed_entry)
                    names[node] = previous = target
                    if elements is not None:
                        flow[node] = elements
                    continue
                if len(node.args) == 1 and node.args[0] in tapped and not node.kwargs and id(child) in self.named_inputs:
                    described = called[target] = self.describe(child, _join(path, target))
                    got = tapped[node.args[0]]  # a dict of the getter's taps, read by name inside
                    if not isinstance(described, Instance) or list(described.inputs) != list(got):
                        raise Unsupported(f"{_join(path, target)}: {type(child).__name__} reads a dict of {sorted(got)}, not as a block of named inputs")
                    entries.append(Entry(target, described, tuple(got.values()), channels=self._channels(child)))
                    names[node] = previous = target
                    continue
                if len(inputs) != 1:
                    raise Unsupported(f"{_join(path, target)}: {type(child).__name__} is called with {len(inputs)} tensors")
                _settings_kept(child, node, _join(path, target))
                if type(child) is torch.nn.Identity and not target.isdigit() and "." not in target:
                    names[node] = name_of(inputs[0])  # a placeholder (timm's `se` where a block has none): no layer, no weights
                    continue
                if target not in called and norm_act(child) is not None:  # timm's BatchNormAct2d
                    called[target] = child
                    first, *rest = norm_act(child)
                    add(Entry(target, Layer(*first), channels=self._channels(child)), node, inputs)
                    for kind, args in rest:
                        add(Entry(fresh(f"{target.replace('.', '_')}_act"), Layer(kind, args)), node, [node])
                    continue
                if target in called:
                    described = called[target]
                    if not (isinstance(described, Layer) and not described.args and described.kind in ACTIVATION_LAYERS):
                        raise Unsupported(f"{_join(path, target)}: {type(child).__name__} is called twice (shared weights)")
                else:
                    described = called[target] = self.describe(child, _join(path, target))
                name = None if target.isdigit() else target
                if name is not None and name in names.values() and lists.still_read(graph, names, name, node):
                    name = fresh(name)  # an activation called again while its earlier output is still read
                entry = Entry(name, described, channels=self._channels(child))
                add(entry, node, inputs)
                getter = taps.layer_getter(child)
                if getter is not None:  # its result is a dict, read by getitem (above)
                    tapped[node] = taps.tap_names(getter, [k for k, _ in child.named_children()], target)
                    del names[node]
                if name is None:
                    names[node] = target
                    entry.name = None
                    previous = target
                continue
            if node.op == "get_attr":
                scales[node] = (str(node.target), False)  # a layer scale, if a multiply reads it (below)
                continue
            if node.op == "call_method" and node.target in ("reshape", "view") and node.args and node.args[0] in scales:
                shape = node.args[1] if len(node.args) == 2 and isinstance(node.args[1], (tuple, list)) else node.args[1:]
                if tuple(shape) != (1, -1, 1, 1):
                    raise Unsupported(f"{what}: forward reshapes the tensor {scales[node.args[0]][0]} to {tuple(shape)}, not (1, -1, 1, 1)")
                scales[node] = (scales[node.args[0]][0], True)  # timm's `x.mul(self.gamma.reshape(1, -1, 1, 1))`
                continue
            kind = function(node.target, tuple(node.args), dict(node.kwargs))
            if kind is None and patterns.index_text(node):
                raise Unsupported(f"{what}: forward indexes {patterns.index_text(node)}, which no channel slice (constant bounds, step 1) expresses")
            if kind is None:
                target = node.target if isinstance(node.target, str) else getattr(node.target, "__name__", str(node.target))
                raise Unsupported(f"{what}: forward calls {target}, which archc has no layer for")
            kind, args = kind
            if kind == "multiply" and any(a in scales for a in node.args):
                ((attr, vector),) = [scales[a] for a in node.args if a in scales]
                (other,) = [a for a in node.args if a not in scales and isinstance(a, torch.fx.Node)]
                param = getattr(module, attr, None)
                shape = (1,) if vector else (3, 1, 1)  # the dimensions, then the trailing sizes
                if not isinstance(param, torch.nn.Parameter) or param.dim() != shape[0] or tuple(param.shape[1:]) != shape[1:]:
                    raise Unsupported(f"{what}: forward multiplies by the tensor {attr}, not a (C, 1, 1) or reshaped (C,) layer scale")
                flat = param.detach().flatten()
                value = float(flat[0]) if bool((flat == flat[0]).all()) else 1.0
                value = float(f"{value:.7g}")  # a float32's shortest digits: 1e-6, not 9.99999997e-07
                used.add(attr)
                scaled.add(attr)
                add(Entry(attr, Layer("layer_scale", {"init_value": value, **({"vector": True} if vector else {})})), node, [other])
                continue
            if kind in ("add", "multiply", "concat"):
                if kind == "concat":
                    tensors = node.args[0] if node.args else node.kwargs["tensors"]
                    if tensors is placeholders[0]:  # torch.cat(inputs, 1) of a dense layer: its input is the concatenation
                        names[node] = names[tensors]
                        continue
                    if not isinstance(tensors, (list, tuple)) or not all(isinstance(t, torch.fx.Node) for t in tensors):
                        raise Unsupported(f"{what}: torch.cat of something other than a list of tensors")
                    inputs = list(tensors)
                elif len(inputs) != 2:
                    raise Unsupported(f"{what}: {kind} of a tensor and a number")
                add(Entry(fresh(kind if kind != "concat" else "cat"), Merge(kind, [name_of(i) for i in inputs])), node, inputs)
                continue
            if len(inputs) != 1:
                raise Unsupported(f"{what}: {kind} of {len(inputs)} tensors")
            base = node.meta.get("archc_name") or ("pool" if kind in ("adaptive_avgpool", "avgpool", "maxpool") else kind)
            add(Entry(fresh(base), Layer(kind, args)), node, inputs)
        for pname, _ in module.named_parameters(recurse=False):
            if pname not in scaled:
                raise Unsupported(f"{what} holds the weight {pname} of its own, which its forward does not use as a layer scale")
        for cname, child in module.named_children():
            if cname not in called and any(True for _ in child.parameters()):
                raise Unsupported(f"{_join(path, cname)}: {type(child).__name__} has weights but forward never calls it (a training-only head? see --arg)")
        return _numbered_tail(_global_pools(listflow.unread(entries, outputs)))


def _global_pools(entries: list[Entry]) -> list[Entry]:
    """adaptive_avgpool to 1 then flatten -> global_avgpool (archc's flat (C,) output)."""
    out: list[Entry] = []
    i = 0
    while i < len(entries):
        e = entries[i]
        nxt = entries[i + 1] if i + 1 < len(entries) else None
        if (
            isinstance(e.node, Layer) and e.node.kind == "adaptive_avgpool" and e.node.args.get("size") == 1
            and nxt is not None and isinstance(nxt.node, Layer) and nxt.node.kind == "flatten" and nxt.src == e.name
            and e.name is not None and nxt.name is not None and not _read_by_name(entries[i + 2 :], e.name)
        ):  # fmt: skip
            out.append(Entry(e.name, Layer("global_avgpool", {}), e.src))
            for later in entries[i + 2 :]:  # what read the flatten reads the pool
                later.src = e.name if later.src == nxt.name else later.src
                if isinstance(later.node, Merge):
                    later.node.inputs = [e.name if n == nxt.name else n for n in later.node.inputs]
            i += 2
            continue
        out.append(e)
        i += 1
    return out


def _numbered_tail(entries: list[Entry]) -> list[Entry]:
    """A numbered module (its children 0, 1, ...) whose forward ends with a resize (torchvision's
    ASPPPooling, an nn.Sequential that resizes back to its input's size): that weightless
    last layer unnamed too, as a numbered block kind writes it (it takes no number)."""
    named = [e for e in entries if e.name is not None]
    if not named or not any(e.name is None for e in entries) or len(named) > 1 or entries[-1] is not named[0]:
        return entries
    last = named[0]
    if isinstance(last.node, Layer) and last.node.kind == "resize" and last.src is None:
        last.name = None
    return entries


def _read_by_name(entries: list[Entry], name: str) -> bool:
    for e in entries:
        if e.src == name or (isinstance(e.node, Merge) and name in e.node.inputs):
            return True
    return False


def _named(name: str) -> bool:
    return name == "input" or not name.isdigit()


def _settings(module: Any) -> dict[str, Any] | None:
    """forward's parameters after the first whose defaults are settings, not tensors (timm's
    `forward(self, x, pre_logits: bool = False)`): traced at their defaults, as the parent's
    call (one tensor argument, checked when the parent is traced) runs them."""
    import inspect

    try:
        params = list(inspect.signature(type(module).forward).parameters.values())[2:]
    except (TypeError, ValueError):
        return None
    settings = {
        p.name: p.default for p in params
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and isinstance(p.default, (bool, int, float, str, type(None)))
    }  # fmt: skip
    return settings or None


def _settings_kept(child: Any, node: Any, path: str) -> None:
    """A call that passes a user module anything besides its tensor passes the defaults its
    forward is traced at (see _settings), or the import refuses it."""
    import inspect

    if len(node.args) <= 1 and not node.kwargs:
        return
    try:
        bound = inspect.signature(type(child).forward).bind(child, *node.args, **node.kwargs)
    except TypeError:
        bound = None
    settings = _settings(child) or {}
    extra = {} if bound is None else dict(list(bound.arguments.items())[2:])
    if bound is None or any(k not in settings or v != settings[k] or type(v) is not type(settings[k]) for k, v in extra.items()):
        shown = ", ".join(f"{k}={v!r}" for k, v in extra.items()) or "its arguments"
        raise Unsupported(f"{path}: {type(child).__name__} is called with {shown}, not its forward's defaults")


def _append_list(child: Any, node: Any) -> bool:
    """timm's SequentialAppendList (VoVNet): an nn.Sequential whose forward(x, concat_list)
    runs its entries in a chain, appends each output to the list it is given, and returns the
    list's concatenation; called here with a list of tensors."""
    import torch.fx
    import torch.nn as nn

    return (
        isinstance(child, nn.Sequential) and type(child).__name__ == "SequentialAppendList" and len(child) > 0
        and len(node.args) == 2 and not node.kwargs and isinstance(node.args[1], (list, tuple))
        and all(isinstance(t, torch.fx.Node) for t in node.args[1])
    )  # fmt: skip


def _container_calls(module: Any, graph: Any) -> None:
    """Calls of every entry of an nn.Sequential child in order, each reading the one before
    (timm's RepGhost: `for conv, bn in zip(self.fusion_conv, self.fusion_bn): bn(conv(x1))`,
    each list of one entry) are one call of the child, as nn.Sequential runs them."""
    import torch.nn as nn

    calls: dict[str, list[Any]] = {}
    for node in graph.nodes:
        if node.op == "call_module" and str(node.target).count(".") == 1:
            calls.setdefault(str(node.target).split(".")[0], []).append(node)
    for name, nodes in calls.items():
        child = getattr(module, name, None)
        if type(child) is not nn.Sequential or [str(n.target) for n in nodes] != [f"{name}.{k}" for k, _ in child.named_children()]:
            continue
        if any(len(n.args) != 1 or n.kwargs for n in nodes) or any(
            later.args[0] is not earlier or len(earlier.users) != 1 for earlier, later in zip(nodes, nodes[1:])
        ):
            continue
        nodes[0].target = name  # the first call runs the whole list: what read the last reads it
        if len(nodes) > 1:
            nodes[-1].replace_all_uses_with(nodes[0])
        for node in reversed(nodes[1:]):
            graph.erase_node(node)


def _drop_guards(graph: Any, settings: dict[str, Any] | None) -> None:
    """torch.fx keeps a setting traced at its value as a placeholder read only by an assertion
    of that value (`_assert_is_none(p)`, or `torch._assert(p == v)`): the graph is for the
    parent's call, which passes only the tensor, so they go. A placeholder read by anything
    else stays (the import then names it: several inputs)."""
    import torch
    from torch.fx._symbolic_trace import _assert_is_none

    def guards(p: Any) -> list[Any] | None:  # the nodes of p's assertions, or None if p is read otherwise
        found = []
        for user in p.users:
            if user.op == "call_function" and user.target is _assert_is_none and not user.users:
                found.append(user)
            elif user.op == "call_function" and all(u.op == "call_function" and u.target is torch._assert and not u.users for u in user.users):
                found += [*user.users, user]
            else:
                return None
        return found

    if not settings:
        return
    for node in [n for n in graph.nodes if n.op == "placeholder"][1:]:
        dead = guards(node)
        if dead is not None:
            for guard in dead:
                graph.erase_node(guard)
            graph.erase_node(node)


def _numbered_sequential(module: Any) -> bool:
    """An nn.Sequential subclass that only names its children, `block1-0` (torchvision's
    RegNet AnyStage): a list whose instances a stage's `names:` spells, not a block kind."""
    import torch.nn as nn

    return (
        isinstance(module, nn.Sequential) and type(module).forward is nn.Sequential.forward
        and any(not key.isidentifier() and not key.isdigit() for key, _ in module.named_children())
    )  # fmt: skip


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key
