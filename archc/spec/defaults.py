"""The `defaults:` section of a model spec: the settings its layers share unless they say."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, StrictBool

from archc.ops.act import ACTIVATIONS
from archc.spec.init_rules import InitSpec
from archc.spec.types import FiniteFloat, Strict

_INIT = "Initialisation of the {0} layers, each tensor unless a layer says; unset: torch_default (PyTorch's own)."


class ConvDefaults(Strict):
    bias: StrictBool | None = Field(None, description="Conv bias when a conv does not say.")
    init: InitSpec | None = Field(None, description=_INIT.format("conv"))


class ConvTransposeDefaults(Strict):
    init: InitSpec | None = Field(None, description=_INIT.format("conv_transpose"))


class DenseDefaults(Strict):
    bias: StrictBool = Field(True, description="Dense bias when a dense layer does not say.")
    init: InitSpec | None = Field(None, description=_INIT.format("dense"))


class BatchNormDefaults(Strict):
    eps: FiniteFloat | None = Field(None, gt=0, description="Batch-norm epsilon (PyTorch 1e-5, Keras apps 1.001e-5).")
    momentum: FiniteFloat | None = Field(
        None, gt=0, lt=1, description="Batch-norm momentum, PyTorch convention (PyTorch 0.1; Keras 0.99 is 0.01 here)."
    )
    scale: StrictBool = Field(True, description="Learn a per-channel scale (gamma); false as Keras' scale=False.")
    init: InitSpec | None = Field(None, description=_INIT.format("batchnorm") + " Its weight is gamma, its bias beta.")


class AvgPoolDefaults(Strict):
    count_include_pad: StrictBool = Field(
        True, description="Average pooling counts padded zeros (PyTorch); false divides by the pixels inside (Keras' 'same')."
    )


class Defaults(Strict):
    conv: ConvDefaults = Field(ConvDefaults.model_construct(), description="Conv settings a conv layer does not give itself.")
    conv_transpose: ConvTransposeDefaults = Field(
        ConvTransposeDefaults.model_construct(), description="Transposed-conv settings a layer does not give itself."
    )
    dense: DenseDefaults = Field(DenseDefaults.model_construct(), description="Dense settings a dense layer does not give itself.")
    batchnorm: BatchNormDefaults = Field(
        BatchNormDefaults.model_construct(), description="Batch-norm numerics; archc never relies on a framework's defaults."
    )
    avgpool: AvgPoolDefaults = Field(AvgPoolDefaults.model_construct(), description="Average-pooling settings a pool does not give itself.")
    activation: Literal[ACTIVATIONS] = Field("relu", description="Activation of a bare `act` layer.")  # type: ignore[valid-type]
