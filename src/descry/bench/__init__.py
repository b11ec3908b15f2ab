"""``descry bench``: reproducible throughput, latency and decode benchmarks on architecture-exact models.

Profiles (``profiles.py``) name the models and workloads; ``builders.py`` builds random-weight models of
the published sizes; ``run.py`` measures the one-generate-per-image baseline, the in-process engine and
the HTTP server side by side in one run; ``report.py`` writes the markdown.
"""

from descry.bench.profiles import PROFILES, get_profile
from descry.bench.report import markdown, update_results
from descry.bench.run import run_profile

__all__ = ["PROFILES", "get_profile", "markdown", "run_profile", "update_results"]
