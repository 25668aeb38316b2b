"""Names of the settings that take one of a few fixed values, in a module without torch.

The library validates against these tuples and the ``gpam`` command offers them as ``choices``;
keeping them here lets ``gpam --help`` list them without importing torch. Variant names live in
``gpam.functional.registry`` (also torch-free; the CLI loads that file on its own).
"""

from __future__ import annotations

#: daGPAM negative-query maps (``neg_query=``)
NEG_QUERIES = ("linear", "full", "negate", "relu_linear")
#: initialisations of the negative-query map (``neg_init=``)
NEG_INITS = ("orthogonal", "neg_identity")
#: how lambda is held (``lambda_mode=``)
LAMBDA_MODES = ("fixed", "head", "token")
#: how a learnable lambda is kept non-negative (``lambda_param=``)
LAMBDA_PARAMS = ("clamp", "softplus", "sigmoid")
#: attention-stack architectures of ``gpam.analysis`` (``architecture=``)
ARCHITECTURES = ("attention", "attention_norm", "attention_skip", "preln")
