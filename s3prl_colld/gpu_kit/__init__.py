"""The GPU kit: what a bare GPU machine with no network needs to run our grid, packed into one ignored folder.

``python -m s3prl_colld.gpu_kit pack DIR`` (on a machine with network) writes
wheels for the GPU image's Python and Debian's espeak-ng / flite with their data;
``install DIR`` (on the GPU machine) installs them offline; ``run DIR -- ARGS``
runs ``python -m s3prl_colld.replicate ARGS`` with the kit's synthesisers. See
docs/gpu_kit.md. :mod:`.install` is standard library only; :mod:`.pack`,
:mod:`.wheels` and :mod:`.tts` are for the packing machine.
"""
