"""The deploy Keras module against the training Keras model: the training PyTorch model with
random weights (batch-norm statistics included, archc.verify.randomize), its weights moved to
the deploy form (archc.deploy.run.deploy_models), and both copied into their Keras modules as
`archc convert` copies them; then one input through both Keras models in inference mode.
Used by tests/test_deploy.py (every zoo spec, make test-slow, beside the PyTorch check) and
scripts/deploy_keras_zoo.py (a table), at an input made smaller by archc.verify.smaller. torch and keras are imported here, never by the compiler core."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from archc.ir.graph import Graph
from archc.spec.loader import LoadedSpec


@dataclass(frozen=True)
class KerasCheck:
    input: tuple[int, ...]  # the input the models ran at (channels first, as the spec writes it)
    train_params: int
    deploy_params: int
    max_rel: float  # max |train - deploy| / max(1, max |train|), float32, over the flattened outputs
    steps: tuple[str, ...]  # what the deploy plan did


def check_keras(spec: LoadedSpec, seed: int = 0) -> KerasCheck:
    from archc.api import load_module
    from archc.deploy.run import deploy_models, forms
    from archc.verify import randomize

    train, the_plan, graph = forms(spec)
    t_model = load_module(train, "torch").build_model()
    randomize(t_model, train, seed=seed)
    t_model.eval()
    d_model, _ = deploy_models(train, graph, the_plan, t_model)
    return compare_keras(spec, train, graph, the_plan.steps, t_model, d_model, seed)


def compare_keras(spec: LoadedSpec, train: Graph, graph: Graph, steps: Sequence[str], t_model: Any, d_model: Any, seed: int = 0) -> KerasCheck:
    """The Keras half alone, given the two PyTorch models in eval mode (as archc.deploy.run.deploy
    returns them, checked): each copied into its Keras module, one input through both."""
    import numpy as np

    from archc.api import load_module
    from archc.interop import channels_last, torch_to_keras
    from archc.verify import deep_stack, x_of

    with deep_stack(train):  # Keras recurses through a functional graph (ResNet-1202)
        k_train = load_module(train, "keras").build_model()
        torch_to_keras(t_model, k_train, train)
        k_deploy = load_module(graph, "keras").build_model()
        torch_to_keras(d_model, k_deploy, graph)
        x = channels_last(x_of(train, 1, seed))
        want = _flat(k_train(x, training=False))
        got = _flat(k_deploy(x, training=False))
    if want.shape != got.shape:
        raise AssertionError(f"{spec.path}: the deploy Keras outputs have {got.shape} values, the training ones {want.shape}")
    max_rel = float(np.abs(want - got).max() / max(1.0, float(np.abs(want).max())))
    return KerasCheck(tuple(spec.model.input), k_train.count_params(), k_deploy.count_params(), max_rel, tuple(steps))


def _flat(out: Any) -> Any:
    """A model's outputs as one float vector: a dict's by sorted key, a list's in order."""
    import numpy as np

    if isinstance(out, dict):
        return np.concatenate([np.asarray(out[k]).ravel() for k in sorted(out)])
    if isinstance(out, (list, tuple)):
        return np.concatenate([np.asarray(v).ravel() for v in out])
    return np.asarray(out).ravel()
