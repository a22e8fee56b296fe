"""Students outside s3prl: Hugging Face ``transformers`` folders and ONNX files (``python -m s3prl_colld.export``).

"Export" here means leaving the toolkit: writing a student in a format other
runtimes load with no code of ours. It is not the checkpoint's ``export``
section (``checkpoint.exported`` / ``PretrainTask.export_section``), which this
package only reads to find the student's config and weights.

- ``source``: a checkpoint -> ``ExportSource`` (the student as a ``StudentEncoder``, with
  how our upstream computes it: padding rule, waveform normalisation);
  DiceHuBERT / ``hubert_local`` checkpoints (s3prl HuBERT checkpoints) are converted into the same form;
- ``hf``: ``ExportSource`` -> a ``transformers.HubertModel`` folder (config.json, model.safetensors,
  preprocessor_config.json, README.md);
- ``onnx``: ``ExportSource`` -> an ONNX graph (dynamic batch and time, every hidden state), optionally int8;
- ``card``: the model card;
- ``__main__``: the command line.
"""
