"""Static files that come from installed Python packages rather than from static/.

`plotly.min.js` is served from the copy inside the installed `plotly` package, so the charts'
JavaScript always matches the Python package that built their figures and nothing is fetched
from a CDN (air-gapped installs work). It appears as `vendor/plotly.min.js`; collectstatic
copies it like any other static file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.contrib.staticfiles.finders import BaseFinder
from django.core.files.storage import FileSystemStorage

PLOTLY_JS = "vendor/plotly.min.js"


def plotly_js_path() -> Path:
    # Imported here, not at module level: importing plotly costs ~0.3 s and only the static
    # files machinery needs its location.
    import plotly

    return Path(plotly.__file__).parent / "package_data" / "plotly.min.js"


class PackageFinder(BaseFinder):
    """Finds the package-provided static files (`vendor/plotly.min.js`)."""

    def check(self, **kwargs: Any) -> list[Any]:
        return []

    def find(self, path: str, find_all: bool = False, **kwargs: Any) -> Any:
        if path != PLOTLY_JS:
            return [] if find_all or kwargs.get("all") else None
        found = str(plotly_js_path())
        return [found] if find_all or kwargs.get("all") else found

    def list(self, ignore_patterns: Any) -> Any:
        source = plotly_js_path()
        storage = FileSystemStorage(location=str(source.parent))
        storage.prefix = "vendor"  # type: ignore[attr-defined]
        yield source.name, storage
