"""The web UI: browse and compare runs example by example, and a playground against the served model.

Server-rendered pages (Jinja2, autoescaped) with a little JavaScript, on the server's FastAPI app
under ``/ui``, behind the same API keys; every script and style sheet ships in the package.
``promptlearning ui RUNS_DIR`` starts a server for it; ``promptlearning serve`` has it too.
"""

from promptlearning.ui.pages import ui_router

__all__ = ["ui_router"]
