"""The operator's web console (``vidretry web``): Starlette, Jinja2 and uvicorn, every asset
served from this package (no CDN, no build step)."""
