"""scripts/gpu_run.sh --dry-run: the whole GPU job (CUDA tests, bench_gpu, the demo recipe with
its before/after GRPO table, packing) runs on the CPU with tiny sizes, and what would come back
from the GPU machine fits its limits (at most 8 files, each under 16 MiB, at most 2 folders
deep, names of letters, digits, '.', '_' and '-')."""
import json
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_gpu_run_dry_run_writes_every_result_within_the_return_limits(tmp_path):
    out, work = tmp_path / "out", tmp_path / "work"
    env = {**os.environ, "OUT": str(out), "WORK": str(work), "PYTHON": sys.executable,
           "PYTHONPATH": str(REPO)}
    proc = subprocess.run(["bash", str(REPO / "scripts" / "gpu_run.sh"), "--dry-run"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=1450)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = (out / "summary.md").read_text()
    for step in ("env", "cuda_tests", "bench", "demo"):
        assert re.search(rf"^\| {step} \| ok \|", summary, re.M), summary
    assert "DRY RUN" in summary and "command, 4 generated token(s)" in summary

    bench = json.loads((out / "bench_gpu.json").read_text())
    assert bench["preset"] == "tiny" and bench["device"].startswith("CPU")
    for key in ("command, 1 generated token(s)", "decode, per token",
                "64-query mask pass, fast (KV cache)", "tracked frame (SAM 2 memory tracking)"):
        assert bench[key]["ms"] > 0 and bench[key]["floor_ms"] > 0

    table = (out / "demo_table.md").read_text()
    assert "before → after" in table and "| overall |" in table

    files = [p for p in out.rglob("*") if p.is_file()]
    assert len(files) <= 8
    for f in files:
        assert f.stat().st_size < 16 * 2 ** 20 and len(f.relative_to(out).parts) <= 3
        assert re.fullmatch(r"[A-Za-z0-9._-]+", f.name)
    parts = sorted(out.glob("demo_model.tar.part-*"))
    assert parts, "the trained demo model did not come back"
    joined = tmp_path / "model.tar"
    joined.write_bytes(b"".join(p.read_bytes() for p in parts))
    with tarfile.open(joined) as tar:
        names = tar.getnames()
    assert "ship/model.safetensors" in names and "ship/config.json" in names
    with tarfile.open(out / "logs.tar.gz") as tar:
        logs = tar.getnames()
    assert "logs/bench.log" in logs and "logs/demo.log" in logs
    assert any(n.endswith("sft/metrics.jsonl") for n in logs)
    assert not any(n.endswith((".safetensors", ".pt")) for n in logs)
