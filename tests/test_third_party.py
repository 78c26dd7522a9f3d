from __future__ import annotations

import subprocess
import sys

from fer_pipeline.third_party import is_known_warning


def test_known_warnings_are_recognised_and_others_are_not():
    assert is_known_warning("register_new_resolver() is deprecated and will be removed", UserWarning)
    assert is_known_warning("\x1b[33mAdd type hints to the `predict` method to enable", UserWarning)
    assert not is_known_warning("Add type hints to the `predict` method", DeprecationWarning)
    assert not is_known_warning("the model file is corrupt", UserWarning)


def test_silenced_even_where_a_library_resets_the_filters_and_others_still_show():
    # mlflow checks a model class's hints under catch_warnings + simplefilter("once"): filters alone
    # do not silence it (the warning was printed at every fer-ui viz start).
    code = (
        "import warnings\n"
        "from fer_pipeline.third_party import silence_known_warnings\n"
        "silence_known_warnings()\n"
        "silence_known_warnings()\n"  # twice: still one wrapper
        "with warnings.catch_warnings():\n"
        "    warnings.simplefilter('once', category=UserWarning)\n"
        "    warnings.warn('\\x1b[33mAdd type hints to the `predict` method to enable', UserWarning)\n"
        "    warnings.warn('a real problem', UserWarning)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert "Add type hints" not in done.stderr
    assert done.stderr.count("a real problem") == 1

