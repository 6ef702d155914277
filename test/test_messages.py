"""Our generated messages: import paths, status constants, and a cross-process LensResult."""
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import spin_until
from lens_ros.core import Status


def test_status_enum_and_message_constants_agree():
    from lens_ros.msg import LensResult

    consts = {k[len("STATUS_"):]: getattr(LensResult, k) for k in dir(LensResult)
              if k.startswith("STATUS_")}
    assert consts == {s.name: s.value for s in Status}


def test_messages_import_from_outside_the_repository(tmp_path):
    code = ("from lens_ros.msg import LensResult, AudioChunk, Transcript\n"
            "from lens_ros.action import Segment\n"
            "import lens_ros.core, lens_ros\n"
            "print(Segment.Goal.REASONING_ON, LensResult.STATUS_TRACKED, lens_ros.__file__)")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[:2] == ["2", "9"]


PUBLISHER = r'''
import sys, time, numpy as np, rclpy
from rclpy.qos import QoSProfile, ReliabilityPolicy
from lens_ros.msg import LensResult
from lens_ros.conversions.image import mask_to_image
rclpy.init()
node = rclpy.create_node("result_publisher")
pub = node.create_publisher(LensResult, "result", QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
mask = np.zeros((480, 640), bool); mask[100:200, 300:420] = True
msg = LensResult(command="the red mug left of the laptop", reasoning="the mug is red", answer="<answer>[300,100,420,200]</answer>",
                 has_box=True, box=np.array([300, 100, 420, 200], np.float32), score=0.75, object_score=3.5,
                 status=LensResult.STATUS_OK, generate_ms=12.5, mask_ms=3.25, total_ms=20.0)
msg.header.frame_id = "camera_optical"; msg.header.stamp.sec = 1700000000; msg.header.stamp.nanosec = 42
msg.mask = mask_to_image(mask, msg.header)
end = time.monotonic() + 60
while pub.get_subscription_count() == 0 and time.monotonic() < end:
    rclpy.spin_once(node, timeout_sec=0.1)
for _ in range(50):
    pub.publish(msg); rclpy.spin_once(node, timeout_sec=0.1)
'''


@pytest.mark.ros
def test_lens_result_with_640x480_mask_crosses_processes(rclpy_node, spawn):
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    from lens_ros.msg import LensResult
    from lens_ros.conversions.image import image_to_mask

    node, ctx = rclpy_node
    got = []
    node.create_subscription(LensResult, "result", got.append,
                             QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
    proc = spawn(code=PUBLISHER)
    assert spin_until(node, lambda: got, timeout=60), proc.log.read_text()
    m = got[0]
    assert m.command == "the red mug left of the laptop" and m.reasoning == "the mug is red"
    assert m.answer == "<answer>[300,100,420,200]</answer>" and m.has_box
    assert [float(v) for v in m.box] == [300.0, 100.0, 420.0, 200.0]
    assert m.score == pytest.approx(0.75) and m.object_score == pytest.approx(3.5)
    assert (m.status, m.generate_ms, m.mask_ms, m.total_ms) == (0, 12.5, 3.25, 20.0)
    assert m.header.frame_id == "camera_optical" and m.header.stamp.nanosec == 42
    assert (m.mask.width, m.mask.height, m.mask.encoding) == (640, 480, "mono8")
    assert m.mask.header.stamp.sec == 1700000000
    expected = np.zeros((480, 640), bool)
    expected[100:200, 300:420] = True
    assert np.array_equal(image_to_mask(m.mask), expected)
    assert os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"
