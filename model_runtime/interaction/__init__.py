"""The `audio-interaction` engine: the real model (transformers + torch).

`checkpoint` loads the upstream release layout, `features` computes the
streaming log-mel, `tiny` writes a rigged tiny checkpoint for tests, and
`engine` runs the LISTENING / SPEAKING loop. Importing this package does not
import torch; the submodules do.
"""
