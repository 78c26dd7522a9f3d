from __future__ import annotations

import json
import re

from fer_pipeline.commands.html_pages import first_visit_script, with_head_script
from fer_pipeline.commands.ui import MLFLOW_DEFAULTS, landing_fragment


def _defaults_in(script: str) -> dict:
    return json.loads(re.search(r"var defaults=(\{.*?\});", script).group(1))


def test_the_script_stores_each_default_as_json_only_where_the_browser_has_none():
    script = first_visit_script({"KedroViz": {"showFeatureHints": False}, "flag_v1": True})
    assert _defaults_in(script) == {"KedroViz": '{"showFeatureHints": false}', "flag_v1": "true"}
    assert "localStorage.getItem(key)===null" in script  # a user's own choice is never overwritten
    assert 'var landing="";' in script


def test_the_bare_address_is_sent_to_the_landing_fragment():
    script = first_visit_script({}, "#/experiments/3/runs")
    assert 'var landing="#/experiments/3/runs";' in script
    assert "location.hash==='#/'" in script


def test_the_script_comes_first_in_the_head_before_the_uis_own_scripts():
    page = '<!doctype html><html><head><script src="main.js"></script></head><body></body></html>'
    rewritten = with_head_script(page, "<script>first()</script>")
    assert rewritten.index("first()") < rewritten.index("main.js")
    assert with_head_script("<html>no head</html>", "<script>x</script>") == "<html>no head</html>"


def test_mlflow_opens_in_model_training_mode_with_the_assistant_and_ui_telemetry_off():
    assert MLFLOW_DEFAULTS["mlflow.workflowType_v1"] == "machine_learning"
    assert MLFLOW_DEFAULTS["mlflow.settings.telemetry.enabled_v1"] is False
    assert landing_fragment("7") == "#/experiments/7/runs"
    assert landing_fragment("") == landing_fragment(None) == landing_fragment("1;alert(1)") == ""
