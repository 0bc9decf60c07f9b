"""Export a run for deployment: merge (merge.py), bitsandbytes quantisation (quantize.py), GGUF
(gguf.py) with an Ollama Modelfile (ollama.py), each checked against the template and EOS the run
trained with (check.py); run.py puts them together for `danlu export`."""
