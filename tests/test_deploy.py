"""deploy/: the alert rules pass promtool's own unit tests, and the manifests and images use the
server's real endpoints, settings and flags (a renamed setting or probe path fails here)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"


def _promtool() -> str | None:
    candidates = [os.environ.get("PROMTOOL"), shutil.which("promtool"),
                  str(Path.home() / ".cache" / "promptlearning" / "tools" / "promtool")]  # fmt: skip
    return next((c for c in candidates if c and Path(c).is_file() and os.access(c, os.X_OK)), None)


@pytest.mark.parametrize("command", [["check", "rules", "alerts.yml"], ["test", "rules", "alerts_test.yml"]])
def test_alert_rules_pass_promtool(command: list[str]) -> None:
    promtool = _promtool()
    if promtool is None:
        pytest.skip("promtool not found (`make promtool` fetches Debian's prometheus package and unpacks it)")
    done = subprocess.run([promtool, *command], cwd=DEPLOY / "prometheus", capture_output=True, text=True,
                          timeout=60, check=False)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def test_alert_rules_read_metrics_the_server_exports() -> None:
    from promptlearning.serving.observability import ServerMetrics

    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_count", "_sum"], "gauge": [""]}
    exported = {m.name + suffix for m in ServerMetrics().registry.collect() for suffix in suffixes[m.type]}
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())["groups"][0]["rules"]
    used = {name for rule in rules for name in re.findall(r"promptlearning:[a-z0-9_:]+", rule["expr"])}
    assert used and used <= exported, used - exported


def _documents(name: str) -> list[dict]:
    return list(yaml.safe_load_all((DEPLOY / "k8s" / name).read_text()))


def test_the_deployment_probes_the_real_endpoints_with_real_settings() -> None:
    from promptlearning.serving.app import OPEN_PATHS
    from promptlearning.serving.settings import ENV_PREFIX, ServerSettings

    deployment = next(d for d in _documents("deployment.yaml") if d["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert {"/ready", "/health"} <= set(OPEN_PATHS)  # probes carry no key
    fields = set(ServerSettings.model_fields)
    for variable in container["env"]:
        if variable["name"].startswith(ENV_PREFIX):
            assert variable["name"].removeprefix(ENV_PREFIX).lower() in fields, variable["name"]
    grace = ServerSettings.model_fields["shutdown_grace_seconds"].default
    assert pod["terminationGracePeriodSeconds"] > grace


def test_the_autoscaler_reads_the_metric_the_adapter_serves() -> None:
    hpa = _documents("hpa.yaml")[0]
    adapter = yaml.safe_load((DEPLOY / "k8s" / "prometheus-adapter.yaml").read_text())["rules"][0]
    assert hpa["spec"]["metrics"][0]["pods"]["metric"]["name"] == adapter["name"]["as"]
    assert adapter["name"]["matches"] in adapter["seriesQuery"]


@pytest.mark.parametrize("dockerfile", ["Dockerfile", "Dockerfile.cuda"])
def test_the_images_start_the_server_with_a_command_it_takes(dockerfile: str) -> None:
    import shlex

    from promptlearning.cli import build_parser

    text = (DEPLOY / dockerfile).read_text()
    command = re.search(r'CMD \["sh", "-c", "exec (promptlearning serve .*?)"\]', text)
    assert command is not None
    argv = shlex.split(command.group(1).replace('\\"$MODEL\\"', "smollm2-135m-instruct"))[1:]
    args = build_parser().parse_args(argv)  # argparse exits on an argument serve does not take
    assert args.command == "serve" and args.host == "0.0.0.0" and str(args.api_keys_file) == "/keys/keys"
    assert "torch==2.13.0" in text and "models pull smollm2-135m-instruct minilm-l6" in text
