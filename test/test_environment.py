"""The venv is what scripts/setup_env.sh promises: torch 2.13.0 (the CPU build by default; a GPU
user may install the CUDA build of the same version), no torchvision, ROS 2 Jazzy wheels only."""
import importlib.metadata as md
import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _installed():
    return {d.metadata["Name"].lower(): d.version for d in md.distributions()}


def test_torch_is_the_pinned_version():
    import torch

    assert torch.__version__.split("+")[0] == "2.13.0"


def test_no_torchvision():
    assert importlib.util.find_spec("torchvision") is None
    assert "torchvision" not in _installed()


def test_cuda_packages_only_beside_a_cuda_build_of_torch():
    """nvidia-*/triton wheels belong to a CUDA torch; beside the CPU build they mean that some
    requirement pulled a second torch stack (gigabytes) and the constraints were bypassed."""
    import torch

    cuda_wheels = [n for n in _installed() if n.startswith("nvidia-") or n == "triton"]
    assert torch.version.cuda or not cuda_wheels


def test_ros_wheels_are_jazzy_only():
    names = _installed()
    assert names["ros-rclpy"] == "7.1.6"
    assert "ros-fastdds" not in names  # only Kilted uses it


def test_every_requirement_is_pinned_or_constrained():
    constraints = (REPO / "requirements" / "constraints.txt").read_text()
    assert "torch==2.13.0" in constraints
    for req in (REPO / "requirements").glob("*.txt"):
        for line in req.read_text().splitlines():
            line = line.split("#")[0].strip()
            if not line or req.name == "constraints.txt":
                continue
            name = line.split("[")[0].split("==")[0]
            assert "==" in line or f"\n{name}==" in "\n" + constraints, f"{req.name}: {line} unpinned"


def test_setup_script_passes_constraints_to_every_pip_call():
    script = (REPO / "scripts" / "setup_env.sh").read_text()
    calls = [ln for ln in script.splitlines() if ln.strip().startswith(("pipi ", "SAM2_BUILD_CUDA"))]
    assert calls and all('-c "$CONSTRAINTS"' in ln for ln in calls)
