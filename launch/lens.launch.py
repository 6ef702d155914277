"""Launch lens_node (and optionally speech_node beside it) in a ROS 2 install.

  ros2 launch lens_ros lens.launch.py model_path:=/path/to/checkpoint \
      namespace:=arm_cam image_topic:=/camera/color/image_raw command_topic:=/operator/command

Arguments (``ros2 launch lens_ros lens.launch.py --show-args``):
  namespace        namespace of the nodes (default: none)
  params_file      lens_node parameters (default: <share>/config/lens.yaml)
  model_path       checkpoint directory; overrides params_file when not empty
  image_topic      remap of the node's ``image`` input (default: image)
  command_topic    remap of the node's ``command`` input (default: command)
  fastdds_profile  Fast DDS XML profile for the node process (default: <share>/config/
                   lens_fastdds.xml, shared memory for whole best-effort 720p frames; '' = none)
  with_speech      also start speech_node, publishing spoken commands on the same command
                   topic (default: false)
  speech_params_file  speech_node parameters (default: <share>/config/speech.yaml)

lens_node configures and activates itself (parameter ``autostart``); its lifecycle services
(``<ns>/lens_node/change_state`` ...) still answer. No ``eval`` of arguments: only strings.
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

PACKAGE = "lens_ros"


def _share(*parts):
    return PathJoinSubstitution([FindPackageShare(PACKAGE), *parts])


ARGUMENTS = [
    ("namespace", "", "Namespace of the nodes."),
    ("params_file", _share("config", "lens.yaml"), "YAML file with lens_node parameters."),
    ("model_path", "", "LENS checkpoint directory; overrides params_file when not empty."),
    ("image_topic", "image", "Topic the node reads camera frames from."),
    ("command_topic", "command", "Topic the node reads text commands from."),
    ("fastdds_profile", _share("config", "lens_fastdds.xml"),
     "Fast DDS XML profile for lens_node ('' = the middleware defaults)."),
    ("with_speech", "false", "Also start speech_node (spoken commands) on command_topic."),
    ("speech_params_file", _share("config", "speech.yaml"), "YAML file with speech_node "
     "parameters."),
]


def _nodes(context):
    """Build the node actions from the evaluated arguments."""
    arg = {name: LaunchConfiguration(name).perform(context) for name, _, _ in ARGUMENTS}
    parameters = [arg["params_file"]]
    if arg["model_path"]:
        parameters.append({"model_path": arg["model_path"]})
    env = {"FASTRTPS_DEFAULT_PROFILES_FILE": arg["fastdds_profile"]} \
        if arg["fastdds_profile"] else None
    command_remap = ("command", arg["command_topic"])
    nodes = [Node(package=PACKAGE, executable="lens_node", name="lens_node",
                  namespace=arg["namespace"], parameters=parameters,
                  remappings=[("image", arg["image_topic"]), command_remap],
                  additional_env=env, output="screen", emulate_tty=True)]
    if arg["with_speech"].lower() in ("true", "1", "yes", "on"):
        nodes.append(Node(package=PACKAGE, executable="speech_node", name="speech_node",
                          namespace=arg["namespace"], parameters=[arg["speech_params_file"]],
                          remappings=[command_remap], output="screen", emulate_tty=True))
    return nodes


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription(
        [DeclareLaunchArgument(name, default_value=default, description=text)
         for name, default, text in ARGUMENTS] + [OpaqueFunction(function=_nodes)])
