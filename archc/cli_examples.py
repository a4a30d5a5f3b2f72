"""The examples each command's `--help` ends with."""

from __future__ import annotations

# One command per line, printed as written (`\b`: click does not rewrap the block), so a line
# pasted into a shell runs what it says.
EXAMPLES = {
    "build": (
        "archc build specs/resnet50.yaml --backend torch",
        "archc build specs/densenet121.yaml --backend keras -o model.py",
        "archc build specs/ --backend torch,keras      # every spec under specs/, into generated/",
    ),
    "check": (
        "archc check specs/densenet121.yaml                    # both backends' limits",
        "archc check specs/densenet121.yaml --backend torch    # PyTorch's only",
        "archc check specs/cifar/resnet.yaml --set params.depth=110 --json",
        "archc check specs/      # every spec under specs/",
    ),
    "summary": (
        "archc summary specs/resnet50.yaml",
        "archc summary specs/densenet121.yaml --level layers --batch 32",
        "archc summary specs/resnet50.yaml --json -o resnet50.json",
        "archc summary specs/      # one row per spec",
    ),
    "graph": (
        "archc graph specs/resnet50.yaml -o resnet50.svg      # format from the extension; needs Graphviz",
        "archc graph specs/densenet121.yaml --format mermaid",
        "archc graph specs/cifar/resnet20.yaml --expand --format dot | dot -Tpng -o resnet20.png",
        "archc graph specs/resnet18.yaml --level layers -o resnet18_layers.dot",
    ),
    "schema": ("archc schema -o docs/archc.schema.json",),
    "completion": ('eval "$(archc completion bash)"      # in ~/.bashrc; zsh and fish likewise',),
    "diff": (
        "archc diff specs/resnet50.yaml specs/resnext50_32x4d.yaml",
        "archc diff specs/cifar/resnet.yaml --set-a params.depth=20 --set-b params.depth=56",
    ),
    "verify": (
        "archc verify specs/resnet50.yaml",
        "archc verify specs/densenet121.yaml --train-mode --batch 4 --json",
    ),
    "convert": (
        "archc convert specs/resnet50.yaml resnet50.pth resnet50.weights.h5      # PyTorch -> Keras",
        "archc convert specs/resnet50.yaml resnet50.weights.h5 resnet50.pth      # Keras -> PyTorch",
        "archc convert specs/cifar/resnet.yaml --set params.depth=56 r56.pth r56.weights.h5",
    ),
    "deploy": (
        "archc deploy specs/repvgg_a0.yaml -o deploy/                      # spec, PyTorch and Keras modules",
        "archc deploy specs/resnet50.yaml --weights r50.pth -o deploy/     # and the moved weights",
    ),
    "import": (
        "archc import torchvision:resnet50 -o resnet50.yaml      # checked: strict load, equal outputs",
        "archc import timm:resnet18d --input 3,160,160",
        "archc import models.py:make_net --arg width=32 --no-check",
    ),
    "blocks": (
        "archc blocks                # every shipped library",
        "archc blocks densenet       # one library",
    ),
}


def examples(command: str) -> str:
    """A command's help epilog: its examples, one per line, never rewrapped."""
    return "Examples:\n\n\b\n" + "\n".join("  " + line for line in EXAMPLES[command])
