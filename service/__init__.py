"""LoopReg HTTP service: FastAPI app, settings, storage, queue access."""
