"""Parts of a block kind's declaration in the spec language (pydantic v2 models, as
archc.spec.models): its `shortcut:` and its `deploy:` form."""

from __future__ import annotations

from typing import Literal, Union

from pydantic import Field, StrictBool, model_validator

from archc.spec.types import ExprStr, LayerName, Name, Strict


class Shortcut(Strict):
    """What a `skip` block adds to its branch output instead of its input, and when."""

    kind: Literal["projection", "option_a"] = Field(
        "projection",
        description="projection: 1x1 conv (with the branch's stride) + optional BN. option_a: parameter-free, "
        "subsample by the stride and zero-pad the new channels (He et al. 2015).",
    )
    when: Union[Literal["shape_changes", "always"], ExprStr] = Field(
        "shape_changes",
        union_mode="left_to_right",
        description="shape_changes: only on instances whose branch changes the shape; always: on every instance; "
        "or a boolean expression over the block's parameters, e.g. conv_shortcut.",
    )
    input: LayerName | None = Field(
        None,
        description="Read the output of this layer of the block instead of the block input, e.g. the "
        "pre-activation's relu (ResNet v2).",
    )
    name: Name = Field("downsample", description="Module name of the shortcut (torchvision: downsample).")
    batchnorm: StrictBool = Field(True, description="projection only: follow the 1x1 conv with batch norm.")
    bias: StrictBool | None = Field(None, description="projection only: conv bias; unset means defaults.conv.bias.")



class DeployMerge(Strict):
    """What `archc deploy` merges in a block kind: parallel linear branches, joined by adds,
    become one conv of the deploy form (structural re-parameterisation: RepVGG, MobileOne)."""

    merge: list[LayerName] = Field(
        min_length=2,
        max_length=64,
        description="The branches, each read by the adds that join them: a layer of the block that is a conv "
        "(its batch norm after it folds in), a batch norm, a call of a block kind that is one conv (and its norm), "
        "or `input` (the identity), each reading the block's input. All of them and nothing else.",
    )
    into: LayerName = Field(
        description="The merged conv's name in the deploy form (its module name and checkpoint key): the add that "
        "joins the branches, or a new name that replaces that add's.",
    )

    @model_validator(mode="after")
    def _distinct(self) -> DeployMerge:
        if len(set(self.merge)) != len(self.merge):
            raise ValueError("the branches of `merge` are distinct layer names")
        return self
