"""Generated models work with the engines users already know: DistributedDataParallel
(2 processes, gloo, CPU) and tf.distribute; they keep no module-level state and
initialise deterministically from the seed."""

import ast

import pytest
from conftest import ROOT, load_module, need

GENERATED = sorted((ROOT / "generated").glob("*_*.py"))
RESNET20 = ROOT / "generated" / "resnet20_torch.py"


@pytest.mark.parametrize("path", GENERATED, ids=lambda p: p.name)
def test_no_module_level_state(path):
    """Top level holds imports, classes, functions, the INPUT_SHAPE constant and initializer
    configs (`CONV_KERNEL_INITIALIZER = {...}`, literal data: each layer builds its own
    initializer from it; a ratio as keras.applications writes it, `"scale": 1.0 / 3.0`) only."""
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and node.targets[0].id.endswith("_INITIALIZER"):  # type: ignore[attr-defined]
            assert len(node.targets) == 1 and isinstance(node.value, ast.Dict)
            data = (ast.Dict, ast.Constant, ast.BinOp, ast.Div, ast.UnaryOp, ast.USub)  # literals, and ratios of them
            assert all(isinstance(n, data) for n in ast.walk(node.value)), ast.dump(node.value)[:80]
            assert isinstance(eval(compile(ast.Expression(node.value), str(path), "eval"), {"__builtins__": {}}), dict)
        elif isinstance(node, ast.Assign):
            assert [t.id for t in node.targets] == ["INPUT_SHAPE"] and isinstance(node.value, ast.Tuple)
        else:
            assert isinstance(node, (ast.Expr, ast.Import, ast.ImportFrom, ast.ClassDef, ast.FunctionDef)), ast.dump(node)[:80]
            assert not isinstance(node, ast.Expr) or isinstance(node.value, ast.Constant)  # the docstring


def test_torch_init_is_deterministic():
    torch = need("torch")
    module = load_module(RESNET20)
    states = []
    for _ in range(2):
        torch.manual_seed(7)
        states.append(module.build_model().state_dict())
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


def _ddp_worker(rank, world, init_file, out_dir):
    import torch
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    torch.manual_seed(0)  # every rank builds the same initial weights from the seed
    model = load_module(RESNET20).build_model().eval()  # eval: BN uses running statistics, per-sample loss
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    x, y = torch.load(out_dir / "batch.pt")
    part = slice(rank * len(x) // world, (rank + 1) * len(x) // world)
    loss = torch.nn.functional.cross_entropy(ddp(x[part]), y[part])
    loss.backward()
    torch.save({n: p.grad for n, p in model.named_parameters()}, out_dir / f"grads{rank}.pt")
    dist.destroy_process_group()


def test_ddp_gradients_are_synchronised(tmp_path):
    """Each rank's gradient after one step equals the single-process gradient on the whole batch."""
    torch = need("torch")
    import torch.multiprocessing as mp

    torch.manual_seed(1)
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
    torch.save((x, y), tmp_path / "batch.pt")
    mp.spawn(_ddp_worker, args=(2, tmp_path / "init", tmp_path), nprocs=2, join=True)
    torch.manual_seed(0)
    model = load_module(RESNET20).build_model().eval()
    torch.nn.functional.cross_entropy(model(x), y).backward()
    ranks = [torch.load(tmp_path / f"grads{r}.pt") for r in range(2)]
    for name, p in model.named_parameters():
        assert torch.equal(ranks[0][name], ranks[1][name]), name
        torch.testing.assert_close(ranks[0][name], p.grad, rtol=1e-4, atol=1e-6, msg=name)


def _keras_resnet20():
    need("keras")
    return load_module(ROOT / "generated" / "resnet20_keras.py")


def test_keras_builds_and_trains_under_tf_distribute():
    tf = need("tensorflow")
    import numpy as np

    module = _keras_resnet20()
    strategy = tf.distribute.get_strategy()  # the default strategy
    with strategy.scope():
        model = module.build_model()
        model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    x = np.random.default_rng(0).normal(size=(4, *module.INPUT_SHAPE)).astype("float32")
    before = [w.numpy().copy() for w in model.trainable_weights]
    loss = model.train_on_batch(x, np.arange(4))
    assert np.isfinite(loss)
    assert any(not np.array_equal(b, w.numpy()) for b, w in zip(before, model.trainable_weights))


def test_keras_jit_compile():
    import numpy as np

    module = _keras_resnet20()
    model = module.build_model()
    x = np.random.default_rng(0).normal(size=(4, *module.INPUT_SHAPE)).astype("float32")
    expected = model.predict(x, verbose=0)
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", jit_compile=True)
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, rtol=1e-4, atol=1e-5)
    assert np.isfinite(model.train_on_batch(x, np.arange(4)))
