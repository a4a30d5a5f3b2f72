"""`archc deploy`: the inference form of a spec, as compiler passes over the spec's functions
(its block kinds and the model's own list), each with its weight transform beside it:

- archc.deploy.fold.strip: what is the identity at inference (dropout, stochastic depth) goes;
- archc.deploy.fold.fold: a batch norm folds into the conv or dense layer before it (fold_after_calls:
  or into the conv that ends the block kind before it);
- archc.deploy.merge.merge: parallel linear branches meeting at an add become one conv;
- archc.deploy.fold.fold_before: a batch norm folds into the conv after it where that is exact
  (the conv pads nothing), or through a global average pool into a dense layer.

`plan(spec, graph)` gives the deploy spec (a document that loads as any spec and compiles to
readable PyTorch and Keras) and what the passes did; archc.deploy.weights moves a training
checkpoint to it; archc.deploy.run (torch) proves the two forms give the same outputs before
anything is written. The compiler part imports neither torch nor tensorflow.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from archc.deploy.doc import document, drop_unused_params, to_yaml, used_kinds
from archc.deploy.fold import fold, fold_after_calls, fold_before, strip
from archc.deploy.merge import Merge, merge
from archc.ir.graph import Graph
from archc.spec.loader import LoadedSpec
from archc.spec.models import MAX_DOC

SUFFIX = "_deploy"


@dataclass(frozen=True)
class Plan:
    doc: dict[str, Any]  # the deploy spec
    steps: tuple[str, ...]  # what the passes did, one line each
    merges: tuple[Merge, ...]  # the convs merge made, for the weights

    def text(self, source: str) -> str:
        header = (
            f"The inference form of {source}, written by `archc deploy` (do not edit: change that\n"
            "spec and deploy it again): "
            + (
                f"{len(self.steps)} rewrites."
                if self.steps
                else "nothing to fold or merge."
            )
        )
        return to_yaml(self.doc, header)


def plan(spec: LoadedSpec, graph: Graph) -> Plan:
    """The deploy form of `spec` (lowered to `graph`): the passes in order, then the block
    kinds no longer called dropped."""
    doc = document(spec, [b.name for b in graph.blocks])
    doc["name"] = graph.name + SUFFIX
    note = " Inference form (archc deploy): batch norms folded, dropout removed, linear branches merged."
    doc["doc"] = (doc.get("doc", "") + note)[-MAX_DOC:].strip()
    removed = strip(doc)
    folds, folded = fold(doc)
    folds += fold_after_calls(doc)
    merged, merges = merge(doc, folded, lambda kind, *sub: spec.blocks[kind].locate(*sub))
    before = fold_before(doc, {(m.owner, m.name) for m in merges})  # not into a merged conv: its weights are made
    keep = used_kinds(doc)
    doc["blocks"] = {name: kind for name, kind in doc["blocks"].items() if name in keep}
    if not doc["blocks"]:
        del doc["blocks"]
    rewrites = removed + folds + merged + before
    # parameters only what went read (a dropout rate): gone too, where something went
    return Plan(doc, tuple(rewrites + (drop_unused_params(doc) if rewrites else [])), tuple(merges))
