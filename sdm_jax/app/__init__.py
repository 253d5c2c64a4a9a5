"""The application layer: what ``train.py``, ``eval.py`` and the demo call.

- :mod:`~sdm_jax.app.task`: the model to block and its checked data (``prepare_task``).
- :mod:`~sdm_jax.app.toy_pretraining`: the toy MLP's stand-in for pretraining.
- :mod:`~sdm_jax.app.meta_batches`: resumable draws of outer steps' meta-batches.
- :mod:`~sdm_jax.app.training`: the training loop (checkpoints, validation, resume, export).
- :mod:`~sdm_jax.app.export`: the finished model as files other tools read.
- :mod:`~sdm_jax.app.evaluation`: attack a run and its baselines, write the report.
- :mod:`~sdm_jax.app.tune_finetuned`: the searched fine-tuned baseline.

It may import every library package (``models``, ``data``, ``blocking``, ``attacks``); none of
them imports it.
"""
