"""lens_node's parameters: declared table, config/lens.yaml, README's table, descriptors, the
status constants. In-process and fast (no model, no second process)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from lens_ros.core import Status
from lens_ros.msg import LensResult
from lens_ros.ros.parameters import (PARAMETERS, SPECS, NodeParams, check_change, check_value,
                                     defaults, inference_overrides, markdown_table)

REPO = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- params:begin -->", "<!-- params:end -->"


def _yaml_params() -> dict:
    doc = yaml.safe_load((REPO / "config" / "lens.yaml").read_text())
    return doc["lens_node"]["ros__parameters"]


def _table_params(text: str) -> dict:
    """{name: default} parsed from a markdown table written by ``markdown_table()``."""
    rows = {}
    for line in text.splitlines():
        m = re.match(r"\|\s*`([a-z0-9_]+)`\s*\|[^|]*\|\s*`([^`]*)`\s*\|", line)
        if m:
            rows[m.group(1)] = yaml.safe_load(m.group(2))
    return rows


def test_config_yaml_holds_every_declared_default_with_its_type():
    values = _yaml_params()
    assert list(values) == [s.name for s in PARAMETERS]
    for name, value in values.items():
        default = SPECS[name].default
        assert value == default and type(value) is type(default), name


def test_readme_parameter_table_matches_config_yaml():
    path = REPO / "README.md"
    assert path.is_file(), "README.md is missing; it holds the node's parameter table"
    readme = path.read_text()
    assert BEGIN in readme and END in readme, \
        f"README.md needs the parameter table between {BEGIN} and {END}"
    table = _table_params(readme.split(BEGIN, 1)[1].split(END, 1)[0])
    assert table == _yaml_params()


def test_generated_table_parses_back_to_the_defaults():
    assert _table_params(markdown_table()) == defaults()


def test_status_enum_and_lens_result_constants_agree():
    consts = {k[len("STATUS_"):]: getattr(LensResult, k) for k in dir(LensResult)
              if k.startswith("STATUS_")}
    assert consts == {s.name: s.value for s in Status}


def test_node_params_fields_are_the_parameters():
    assert list(NodeParams.__dataclass_fields__) == [s.name for s in PARAMETERS]
    assert NodeParams(**defaults()).mode == "on_command"


@pytest.mark.parametrize("name, value, fragment", [
    ("max_new_tokens", 0, "outside"),
    ("max_new_tokens", 2.5, "integer"),
    ("mode", "sometimes", "not one of"),
    ("device", "gpu0", "not valid"),
    ("image_reliability", "maybe", "not one of"),
    ("frame_max_age", -1.0, "outside"),
])
def test_bad_values_are_refused_with_the_reason(name, value, fragment):
    assert fragment in check_value(name, value)


def test_good_values_pass_and_ints_are_accepted_for_doubles():
    for name, value in [("device", "cuda:1"), ("rate", 5), ("mode", "continuous"),
                        ("model_path", "/x"), ("no_target_iou", 0.5)]:
        assert check_value(name, value) is None


def test_reload_parameters_are_refused_only_while_a_model_is_loaded():
    assert "cleanup" in check_change("model_path", "/new", model_loaded=True)
    assert check_change("model_path", "/new", model_loaded=False) is None
    assert check_change("max_new_tokens", 16, model_loaded=True) is None


def test_inference_overrides_turn_gate_sentinels_into_none():
    p = NodeParams(**defaults())
    over = inference_overrides(p)
    assert over["no_target_object_score"] is None and over["no_target_iou"] is None
    p.no_target_object_score, p.no_target_iou = 0.0, 0.3
    over = inference_overrides(p)
    assert over["no_target_object_score"] == 0.0 and over["no_target_iou"] == 0.3


def test_declared_descriptors_explain_and_limit_each_parameter(rclpy_node):
    from lens_ros.ros.lens_node import LensNode

    _, ctx = rclpy_node
    node = LensNode("lens_node_descriptors", context=ctx)
    try:
        for spec in PARAMETERS:
            desc = node.describe_parameter(spec.name)
            assert desc.description.startswith(spec.description[:30]), spec.name
            assert desc.read_only == (spec.applies == "start"), spec.name
            if spec.low is not None and isinstance(spec.default, float):
                assert desc.floating_point_range[0].to_value == spec.high
            elif spec.low is not None:
                assert desc.integer_range[0].from_value == spec.low
        from rclpy.parameter import Parameter

        result = node.set_parameters([Parameter("max_new_tokens", value=0)])[0]
        assert not result.successful
        result = node.set_parameters([Parameter("mode", value="nonsense")])[0]
        assert not result.successful and "mode" in result.reason
        result = node.set_parameters([Parameter("model_path", value="/some/where")])[0]
        assert result.successful  # unconfigured: a new path is fine
        result = node.set_parameters([Parameter("autostart", value=False)])[0]
        assert not result.successful  # read-only
    finally:
        node.destroy_node()
