"""launch/lens.launch.py, evaluated with stand-in ``launch`` / ``launch_ros`` modules.

The real packages are not on PyPI, so small stubs record what the launch file builds: the
declared arguments and the Node actions it returns for a given set of argument values. The
repository root stands in for the installed share directory (CMake installs config/ and launch/
into share/lens_ros).
"""
from __future__ import annotations

import importlib.util
import os
import re
import sys
import types
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
LAUNCH_FILE = REPO / "launch" / "lens.launch.py"


class _Sub:
    """Base of the stub substitutions: ``perform(context) -> str``."""

    def perform(self, context) -> str:
        raise NotImplementedError


def _perform(value, context) -> str:
    return value.perform(context) if isinstance(value, _Sub) else str(value)


def _stub_modules() -> dict[str, types.ModuleType]:
    launch, actions, subs = (types.ModuleType(n) for n in
                             ("launch", "launch.actions", "launch.substitutions"))
    launch_ros, ros_actions, ros_subs = (types.ModuleType(n) for n in
                                         ("launch_ros", "launch_ros.actions",
                                          "launch_ros.substitutions"))

    class LaunchDescription:
        def __init__(self, entities=()):
            self.entities = list(entities)

    class DeclareLaunchArgument:
        def __init__(self, name, default_value=None, description="", **kwargs):
            self.name, self.default_value, self.description = name, default_value, description

    class OpaqueFunction:
        def __init__(self, function, args=None, kwargs=None):
            self.function = function

    class LaunchConfiguration(_Sub):
        def __init__(self, name):
            self.name = name

        def perform(self, context):
            return context.launch_configurations[self.name]

    class PathJoinSubstitution(_Sub):
        def __init__(self, parts):
            self.parts = parts

        def perform(self, context):
            return os.path.join(*(_perform(p, context) for p in self.parts))

    class FindPackageShare(_Sub):
        def __init__(self, package):
            self.package = package

        def perform(self, context):
            return context.share_dirs[self.package]

    class Node:
        def __init__(self, **kwargs):
            self.kwargs = kwargs

    launch.LaunchDescription = LaunchDescription
    actions.DeclareLaunchArgument, actions.OpaqueFunction = DeclareLaunchArgument, OpaqueFunction
    subs.LaunchConfiguration, subs.PathJoinSubstitution = LaunchConfiguration, PathJoinSubstitution
    ros_actions.Node, ros_subs.FindPackageShare = Node, FindPackageShare
    launch.actions, launch.substitutions = actions, subs
    launch_ros.actions, launch_ros.substitutions = ros_actions, ros_subs
    return {m.__name__: m for m in (launch, actions, subs, launch_ros, ros_actions, ros_subs)}


class _Context:
    def __init__(self, share_dirs):
        self.share_dirs = share_dirs
        self.launch_configurations = {}


@pytest.fixture
def launch_file(monkeypatch):
    """(description, evaluate): the launch description and ``evaluate(**args) -> [Node]``."""
    for name, module in _stub_modules().items():
        monkeypatch.setitem(sys.modules, name, module)
    spec = importlib.util.spec_from_file_location("lens_launch_under_test", LAUNCH_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    description = module.generate_launch_description()
    declared = {e.name: e for e in description.entities if hasattr(e, "default_value")}
    opaque = [e for e in description.entities if hasattr(e, "function")]

    def evaluate(**args):
        unknown = set(args) - set(declared)
        assert not unknown, f"not launch arguments: {unknown}"
        ctx = _Context({"lens_ros": str(REPO)})
        for name, arg in declared.items():
            ctx.launch_configurations[name] = _perform(arg.default_value, ctx)
        ctx.launch_configurations.update(args)
        return [node for fn in opaque for node in fn.function(ctx)]

    return declared, evaluate


def _console_scripts() -> dict[str, str]:
    text = (REPO / "setup.py").read_text()
    return dict(re.findall(r'"([\w-]+)\s*=\s*([\w.]+:\w+)"', text))


def _has_ros_parameters(path: str, node_name: str) -> bool:
    doc = yaml.safe_load(Path(path).read_text())
    return isinstance(doc, dict) and any(
        key in (node_name, "/**") and isinstance(v, dict) and "ros__parameters" in v
        for key, v in doc.items())


def test_launch_arguments_are_declared_with_descriptions(launch_file):
    declared, _ = launch_file
    for name in ("namespace", "params_file", "model_path", "image_topic", "command_topic",
                 "with_speech"):
        assert name in declared and declared[name].description, name


def test_default_launch_starts_lens_node_from_a_console_script_with_its_params_file(
        launch_file):
    _, evaluate = launch_file
    (node,) = evaluate()
    kw = node.kwargs
    assert kw["package"] == "lens_ros" and kw["name"] == "lens_node"
    module = _console_scripts().get(kw["executable"])
    assert module == "lens_ros.startup:lens_node"  # imports lens_ros.ros.lens_node, runs main
    importlib.import_module(module.split(":")[0])  # the entry point's module imports
    params_file = kw["parameters"][0]
    assert Path(params_file).is_file() and _has_ros_parameters(params_file, "lens_node")
    assert len(kw["parameters"]) == 1  # no model_path override unless one is given
    assert dict(kw["remappings"]) == {"image": "image", "command": "command"}
    assert Path(kw["additional_env"]["FASTRTPS_DEFAULT_PROFILES_FILE"]).is_file()


def test_arguments_set_namespace_remaps_and_model_path(launch_file):
    _, evaluate = launch_file
    (node,) = evaluate(namespace="arm_cam", model_path="/models/lens-3b",
                       image_topic="/camera/color/image_raw", command_topic="/operator/command",
                       fastdds_profile="")
    kw = node.kwargs
    assert kw["namespace"] == "arm_cam"
    assert {"model_path": "/models/lens-3b"} in kw["parameters"]
    assert dict(kw["remappings"]) == {"image": "/camera/color/image_raw",
                                      "command": "/operator/command"}
    assert kw["additional_env"] is None


def test_speech_node_starts_beside_lens_node_only_when_asked(launch_file):
    _, evaluate = launch_file
    assert [n.kwargs["executable"] for n in evaluate()] == ["lens_node"]
    nodes = evaluate(with_speech="true", namespace="ops", command_topic="/operator/command")
    speech = next(n.kwargs for n in nodes if n.kwargs["executable"] == "speech_node")
    assert _console_scripts().get("speech_node") == "lens_ros.startup:speech_node"
    assert speech["namespace"] == "ops"
    assert dict(speech["remappings"]) == {"command": "/operator/command"}
    params_file = speech["parameters"][0]
    assert Path(params_file).is_file(), f"{params_file} is missing"
    assert _has_ros_parameters(params_file, "speech_node")


def test_launch_file_never_evaluates_strings():
    text = LAUNCH_FILE.read_text()
    assert "eval(" not in text and "exec(" not in text
