"""sgdscope inside training frameworks: thin callbacks over :class:`sgdscope.Monitor`.

- :mod:`sgdscope.integrations.lightning`: ``SgdscopeCallback``, a PyTorch Lightning ``Callback``
  (``pip install "sgdscope[lightning]"``).
- :mod:`sgdscope.integrations.transformers`: ``SgdscopeCallback``, a Hugging Face
  ``TrainerCallback`` (``pip install "sgdscope[transformers]"``).

Each module imports its framework when it is imported, so ``import sgdscope`` needs neither.
"""
