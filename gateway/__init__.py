"""The FastAPI gateway: POST a video (URL or upload), get a verdict and a Grad-CAM overlay video.

`create_app(settings)` (gateway.main) builds the application; `python -m gateway` serves it with uvicorn.
"""
