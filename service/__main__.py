"""`python -m service`: run the API with uvicorn (settings from LOOPREG_* env)."""

from __future__ import annotations

import os

import uvicorn

if __name__ == "__main__":
    uvicorn.run(
        "service.app:create_app",
        factory=True,
        host=os.environ.get("LOOPREG_HOST", "0.0.0.0"),
        port=int(os.environ.get("LOOPREG_PORT", "8000")),
        proxy_headers=True,
    )
