"""``lookout api`` with LOOKOUT_API_WORKERS > 1: several processes on one port, one view
of the metrics, and all of them gone after SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from lookout.embedded.postgres import free_port
from lookout.settings import Settings

pytestmark = pytest.mark.asyncio


def _children(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rpartition(")")[2].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.add(int(entry.name))
    return found


def _healthz_count(text: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if (
                sample.name == "lookout_api_requests_total"
                and sample.labels.get("route") == "/healthz"
            ):
                return sample.value
    return 0.0


async def test_two_worker_processes_serve_and_metrics_count_every_request(
    settings: Settings,
) -> None:
    await asyncio.to_thread(_serve_and_count, settings)


def _serve_and_count(settings: Settings) -> None:
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("LOOKOUT_")},
        "LOOKOUT_DATABASE_URL": settings.database_url,
        "LOOKOUT_KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "LOOKOUT_TOKEN_SECRET": settings.token_secret.get_secret_value(),
        "LOOKOUT_API_PORT": str(port),
        "LOOKOUT_API_WORKERS": "2",
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    api = subprocess.Popen(
        [sys.executable, "-m", "lookout", "api"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base, timeout=5) as http:
            for _ in range(300):
                if api.poll() is not None:
                    raise AssertionError(api.stderr.read().decode() if api.stderr else "")
                try:
                    if http.get("/healthz").status_code == 200 and len(_children(api.pid)) >= 2:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.1)
            # New connections each: the kernel spreads them over the processes.
            before = _healthz_count(http.get("/metrics").text)
            for _ in range(20):
                with httpx.Client(base_url=base) as fresh:
                    assert fresh.get("/healthz").status_code == 200
            counts = {_healthz_count(httpx.get(base + "/metrics").text) for _ in range(6)}
            assert counts == {before + 20}
        workers = _children(api.pid)
        assert len(workers) >= 2
    finally:
        api.send_signal(signal.SIGTERM)
        api.wait(timeout=30)
    assert api.returncode == 0
    for _ in range(50):
        if not any(Path(f"/proc/{pid}").exists() for pid in workers):
            break
        time.sleep(0.1)
    assert not any(Path(f"/proc/{pid}").exists() for pid in workers)
