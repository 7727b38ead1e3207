"""gunicorn configuration for a checkout: `gunicorn -c gunicorn.conf.py`.

The settings and hooks live in the package, so an installed `oppscan serve`
uses the same ones.
"""

from oppscan.gunicorn_config import *  # noqa: F403
