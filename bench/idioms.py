"""Generated PyTorch beside torchvision's own source (issue 21 §7): lines of code, classes,
loops, conditionals and calls per module, counted with `ast` the same way on both sides.

torchvision's file holds the whole family (every width, the weights' metadata and builder
functions); the counts on its side are of the classes and functions one model needs
(RELEVANT), so both columns describe one model's code. Needs torchvision (.tvenv):

    PYTHONPATH=. .tvenv/bin/python bench/idioms.py
"""

from __future__ import annotations

import ast
import importlib
import inspect
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# generated module -> (torchvision module, the names one model of it uses)
RELEVANT = {
    "efficientnet_b0": ("torchvision.models.efficientnet", ["_MBConvConfig", "MBConvConfig", "FusedMBConvConfig", "MBConv", "EfficientNet", "_efficientnet_conf", "_efficientnet"]),
    "mobilenet_v3_large": ("torchvision.models.mobilenetv3", ["InvertedResidualConfig", "InvertedResidual", "MobileNetV3", "_mobilenet_v3_conf", "_mobilenet_v3"]),
    "convnext_tiny": ("torchvision.models.convnext", ["LayerNorm2d", "CNBlock", "CNBlockConfig", "ConvNeXt", "_convnext", "convnext_tiny"]),
    "regnet_y_400mf": ("torchvision.models.regnet", ["SimpleStemIN", "BottleneckTransform", "ResBottleneckBlock", "AnyStage", "BlockParams", "RegNet", "_regnet", "regnet_y_400mf"]),
}  # fmt: skip


def counts(tree: ast.AST, source: str) -> dict[str, int]:
    code_lines = {n.lineno for n in ast.walk(tree) if isinstance(n, ast.stmt)}
    docstrings = {
        line
        for n in ast.walk(tree)
        if isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant) and isinstance(n.value.value, str)
        for line in range(n.lineno, n.end_lineno + 1)
    }
    return {
        "statements": len(code_lines - docstrings),
        "classes": sum(isinstance(n, ast.ClassDef) for n in ast.walk(tree)),
        "loops": sum(isinstance(n, (ast.For, ast.comprehension)) for n in ast.walk(tree)),
        "ifs": sum(isinstance(n, (ast.If, ast.IfExp)) for n in ast.walk(tree)),
        "calls": sum(isinstance(n, ast.Call) for n in ast.walk(tree)),
    }


def torchvision_part(module_name: str, names: list[str]) -> tuple[ast.Module, str]:
    module = importlib.import_module(module_name)
    parts = [inspect.getsource(getattr(module, n)) for n in names if hasattr(module, n)]
    source = "\n\n".join(inspect.cleandoc(p) if p.startswith(" ") else p for p in parts)
    return ast.parse(source), source


def main() -> None:
    keys = ["statements", "classes", "loops", "ifs", "calls"]
    print(f"{'model':<20}{'side':<13}" + "".join(f"{k:>11}" for k in keys))
    for name, (module_name, names) in RELEVANT.items():
        source = (ROOT / "generated" / f"{name}_torch.py").read_text()
        ours = counts(ast.parse(source), source)
        theirs = counts(*torchvision_part(module_name, names))
        print(f"{name:<20}{'generated':<13}" + "".join(f"{ours[k]:>11}" for k in keys))
        print(f"{'':<20}{'torchvision':<13}" + "".join(f"{theirs[k]:>11}" for k in keys))


if __name__ == "__main__":
    main()
