"""The dashboard at ``/ui``: static HTML, CSS and JavaScript shipped in this package.

The page holds no data of its own: it reads the public control-plane API (``/api/v1``, with
the admin token the user types) and the event stream ``/api/v1/events``.
"""

from modelrouter.api.ui.pages import DashboardPages

__all__ = ["DashboardPages"]
