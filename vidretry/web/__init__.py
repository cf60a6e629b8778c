"""The operator's web console (``vidretry web``): Starlette, Jinja2 and uvicorn, every asset
served from this package (no CDN, no build step).

``app`` is the routes, each answered by the room that owns it: who is asking (``auth``), the
HTML pages (``pages``), the JSON API (``api``), the live overview (``live``); what they read
(``reads``), how they answer (``answers``), what a request may carry (``params``), the
overview's chart (``chart``), the console's tokens (``tokens``) and the server (``serve``).

May import: ``vidretry.queue``, ``vidretry.results``, ``vidretry.db`` and the shared
vocabulary; the only package that imports Starlette, Jinja2 or uvicorn (``.importlinter``).
"""
