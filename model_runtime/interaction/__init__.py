"""The `audio-interaction` engine: the real model (transformers + torch).

`checkpoint` loads the upstream release layout, `features` computes the
streaming log-mel, `tiny` writes a rigged tiny checkpoint for tests, and
`engine` runs the LISTENING / SPEAKING loop. Importing this package does not
import torch; the submodules do.
"""

import logging as _logging

# transformers imports torchao whenever it is installed (we use it for --quantize), and
# torchao then logs a warning per optional GPU kernel library a CPU-only torch cannot load
# (mxfp8, cutlass; "no triton"), and torch one about an Enum it registers: harmless
# noise on every start, and it would break the CLI's one-line errors.
_logging.getLogger("torchao").setLevel(_logging.ERROR)
_logging.getLogger("torch.utils._pytree").setLevel(_logging.ERROR)
