"""Students and teachers behind one registry: ``create("resnet8_plain", num_classes=10)``.

Three sources, one call:

- the zoo: CIFAR ResNets and their ``*_plain`` twins (:mod:`edgekd.models.resnet`), MobileNetV2
  students (:mod:`edgekd.models.mobilenet`), AdderNets (:mod:`edgekd.models.adder`) and BERT-style
  encoders (:mod:`edgekd.models.bert`);
- ``tv:NAME``: torchvision's classification builders (:mod:`edgekd.models.tv`);
- ``hf:NAME``: Hugging Face ``transformers`` image classifiers built from a config (:mod:`edgekd.models.hf`).

Weights only come from a file the user gives (``weights=PATH``); nothing is downloaded. Every
model family declares its contract (stages to tap, pruning rules, exits, input size, knobs) beside
its code (:mod:`edgekd.models.contract`). Every module of this package is imported below, so a new
family file registers its models and its family as soon as it exists.
"""

from __future__ import annotations

from edgekd.models._registry import MODELS, NAMESPACES, create, list_models, register_model
from edgekd.models.complexity import count_params, flops
from edgekd.models.contract import Contract, Family, Feature, Knob, contract_of, family_of, register_family
from edgekd.models.logits import logits_only
from edgekd.registry import import_modules

import_modules(__name__, __path__)

__all__ = ["MODELS", "NAMESPACES", "Contract", "Family", "Feature", "Knob", "contract_of", "count_params", "create",
           "family_of", "flops", "list_models", "logits_only", "register_family", "register_model"]
