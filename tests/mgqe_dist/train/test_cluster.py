"""Cluster use: a 2-node Ray cluster on one machine, and `mgqe-dist submit` to a real
`ray start --head` cluster through Ray Jobs."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import ray
from ray.cluster_utils import Cluster

from mgqe_dist.config import load_job
from mgqe_dist.train.ray_job import train_distributed
from tests.mgqe_dist.train.test_ray_train import _job

ONE_EPOCH = ["trainer.num_workers=2", "train.epochs=1"]


def test_workers_spread_over_two_nodes(tmp_path: Path, tiny_job: Path) -> None:
    ray.shutdown()  # leave the session's single-node Ray for a two-node cluster
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1)
    try:
        ray.init(address=cluster.address)
        job = load_job(_job(tmp_path, tiny_job, "run"), ONE_EPOCH)
        metrics = train_distributed(job)
    finally:
        ray.shutdown()
        cluster.shutdown()
    nodes = metrics["trainer"]["node_ids"]
    assert len(nodes) == 2 and len(set(nodes)) == 2  # one worker per node
    assert metrics["hr@10"] > 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def head_node() -> Iterator[str]:
    """A real Ray head started with `ray start --head --block`; yields the Jobs address."""
    # Free ports for every listener, the dashboard agent's included (its default, 52365, is
    # taken whenever another local Ray runs on the machine, and Jobs then have no agent).
    port, dashboard, agent = _free_port(), _free_port(), _free_port()
    # Ray's unix socket paths must stay short: pytest's tmp_path is too deep.
    temp_dir = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    ray_cli = Path(sys.executable).parent / "ray"
    head = subprocess.Popen(
        [
            str(ray_cli),
            "start",
            "--head",
            "--block",
            f"--port={port}",
            "--num-cpus=2",
            "--include-dashboard=true",
            f"--dashboard-port={dashboard}",
            f"--dashboard-agent-listen-port={agent}",
            f"--temp-dir={temp_dir}",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    address = f"http://127.0.0.1:{dashboard}"
    deadline = time.time() + 120
    while True:
        try:
            with socket.create_connection(("127.0.0.1", dashboard), timeout=1):
                break
        except OSError:
            assert head.poll() is None and time.time() < deadline, "ray head did not start"
            time.sleep(1)
    yield address
    head.terminate()
    head.wait(timeout=90)
    shutil.rmtree(temp_dir, ignore_errors=True)


def test_submit_runs_the_job_on_the_cluster(tmp_path: Path, tiny_job: Path, head_node: str) -> None:
    spec = Path(f"submit-test-{os.getpid()}.toml")  # inside the uploaded working dir
    spec.write_text(_job(tmp_path, tiny_job, "run").read_text())
    try:
        args = [sys.executable, "-m", "mgqe_dist.cli", "submit", str(spec), "--address", head_node]
        for item in ONE_EPOCH:
            args += ["--set", item]
        done = subprocess.run(args, capture_output=True, text=True, timeout=600)
    finally:
        spec.unlink()
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "submitted tiny-" in done.stdout and "SUCCEEDED" in done.stdout
    assert "test hr@10" in done.stdout  # the job's logs were streamed
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["trainer"]["num_workers"] == 2
