"""Inference: load a run, an artefact or a model (same template and stop tokens as training)
and generate — used by chat, eval, serve and the web UI."""
