"""`danlu serve`: an OpenAI-compatible API (FastAPI + uvicorn) over one base model with many LoRA
adapters. protocol.py (request models, response builders), errors.py (OpenAI error shape),
security.py (API key, body limit, bind warning), adapters.py (the models a server offers),
engine.py (continuous batching over transformers, mixed-adapter batches; kv.py, sampling.py,
text.py), vllm_backend.py (vLLM when installed), app.py (routes), server.py (build and run)."""
