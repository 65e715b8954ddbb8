"""Shared pytest setup: a private data cache, quiet TensorFlow, and nbval output rules."""

import os
import shutil
import tempfile

# Before anything imports fer_utils or TensorFlow: one fresh cache per test session (unless
# FER_REPORT_CACHE names one), and TensorFlow's C++ logs stay out of the outputs.
SESSION_CACHE = None if "FER_REPORT_CACHE" in os.environ else tempfile.mkdtemp(prefix="fer-report-test-cache-")
if SESSION_CACHE:
    os.environ["FER_REPORT_CACHE"] = SESSION_CACHE
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def pytest_unconfigure(config):
    """Remove the session's cache (a cache given in FER_REPORT_CACHE is left alone)."""
    if SESSION_CACHE:
        shutil.rmtree(SESSION_CACHE, ignore_errors=True)


def pytest_collectstart(collector):
    """nbval: stderr (TensorFlow and kernel warnings) differs between machines; skip it."""
    if collector.fspath and collector.fspath.ext == ".ipynb":
        collector.skip_compare += ("stderr",)
