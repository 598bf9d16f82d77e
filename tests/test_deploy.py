"""The deploy files, checked statically (CI cannot run Docker here): the Dockerfile, the
compose file, the Caddyfile, the systemd unit, the env example and the Grafana dashboard
name only settings that exist, mount only files that exist, and query only series the app
exposes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from bot.core.metrics import Metrics
from bot.core.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
SETTINGS = {f"SAFESCHOOL_{name.upper()}" for name in Settings.model_fields}
NAMED = re.compile(r"\bSAFESCHOOL_[A-Z0-9_]+\b")
# Variables the compose file takes from its env file that are not the app's settings.
COMPOSE_ONLY = {"POSTGRES_PASSWORD", "DOMAIN"}


def _instructions(path: Path) -> list[tuple[str, str]]:
    """A Dockerfile's instructions (continuation lines joined, comments dropped)."""
    text = re.sub(r"\\\n", " ", path.read_text(encoding="utf-8"))
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_the_dockerfile_builds_a_slim_non_root_image_that_runs_the_bot() -> None:
    steps = _instructions(ROOT / "Dockerfile")
    words = [word for word, _ in steps]
    assert words[0] == "FROM" and re.match(r"python:3\.1[1-9]-slim", steps[0][1])
    users = [rest for word, rest in steps if word == "USER"]
    assert users and users[-1] not in ("root", "0")
    assert words.index("USER") > max(i for i, (w, r) in enumerate(steps)
                                     if w == "RUN" and "pip install" in r)
    assert json.loads(dict(steps)["ENTRYPOINT"]) == ["safeschool", "run"]
    assert "/healthz" in dict(steps)["HEALTHCHECK"]
    for word, rest in steps:
        if word == "COPY":
            *sources, _target = rest.split()
            assert all((ROOT / s).exists() for s in sources), rest
    unknown = set(NAMED.findall((ROOT / "Dockerfile").read_text())) - SETTINGS
    assert not unknown, unknown


def test_the_compose_file_is_complete_and_names_only_real_settings() -> None:
    path = DEPLOY / "compose.yaml"
    compose = yaml.safe_load(path.read_text(encoding="utf-8"))
    services = compose["services"]
    assert services["db"]["image"] == "postgres:16"
    app = services["app"]
    build = app["build"]
    assert (DEPLOY / build["context"] / build["dockerfile"]).is_file()
    assert app["env_file"] == [".env"]  # secrets from the env file, never from compose
    assert app["depends_on"]["db"]["condition"] == "service_healthy"
    caddy = services["caddy"]
    assert {"80:80", "443:443"} <= set(caddy["ports"])
    mounted = [v.split(":")[0] for v in caddy["volumes"] if v.startswith("./")]
    assert mounted and all((DEPLOY / m).is_file() for m in mounted)
    used_volumes = {v.split(":")[0] for s in services.values() for v in s.get("volumes", [])
                    if not v.startswith(".")}
    assert used_volumes <= set(compose["volumes"]) and {"pgdata", "media"} <= used_volumes
    text = path.read_text(encoding="utf-8")
    environment = set(app["environment"])
    assert environment <= SETTINGS, environment - SETTINGS
    unknown = set(NAMED.findall(text)) - SETTINGS
    assert not unknown, unknown
    interpolated = set(re.findall(r"\$\{([A-Z0-9_]+)", text))
    assert interpolated <= COMPOSE_ONLY | SETTINGS, interpolated
    secrets = {name for name, field in Settings.model_fields.items()
               if "SecretStr" in str(field.annotation)}
    assert secrets and not {f"SAFESCHOOL_{s.upper()}" for s in secrets} & environment
    assert services["db"]["environment"]["POSTGRES_PASSWORD"].startswith("${")


def test_the_env_example_lists_every_setting_once() -> None:
    text = (DEPLOY / "env.example").read_text(encoding="utf-8")
    named = re.findall(r"^#?\s*(SAFESCHOOL_[A-Z0-9_]+)=", text, re.MULTILINE)
    assert set(named) == SETTINGS, (SETTINGS - set(named), set(named) - SETTINGS)
    assert len([n for n in named if n != "SAFESCHOOL_DATABASE_URL"]) == len(SETTINGS) - 1
    for name in COMPOSE_ONLY:
        assert f"{name}=" in text


def test_caddy_proxies_the_app_and_keeps_the_operators_endpoints_private() -> None:
    text = (DEPLOY / "Caddyfile").read_text(encoding="utf-8")
    assert "reverse_proxy app:8080" in text and "{$DOMAIN}" in text
    assert re.search(r"@private path /metrics /readyz", text) and "respond @private 404" in text


def test_the_systemd_unit_runs_the_bot_from_its_env_file() -> None:
    text = (DEPLOY / "safeschool.service").read_text(encoding="utf-8")
    assert "ExecStart=/opt/safeschool/.venv/bin/safeschool run" in text
    assert "EnvironmentFile=/etc/safeschool/env" in text and "User=safeschool" in text


def test_the_grafana_dashboard_queries_only_series_the_app_exposes() -> None:
    dashboard = json.loads((DEPLOY / "grafana-dashboard.json").read_text(encoding="utf-8"))
    exposed = {m.name for m in Metrics().registry.collect()}
    exposed |= {f"{name}_total" for name in exposed} | {f"{name}_bucket" for name in exposed}
    queried = {name for panel in dashboard["panels"] for target in panel["targets"]
               for name in re.findall(r"\bsafeschool_[a-z_]+", target["expr"])}
    assert queried and queried <= exposed, queried - exposed
    assert {"safeschool_oldest_pending_alert_seconds", "safeschool_outbox_depth",
            "safeschool_alerts_unacknowledged"} <= queried
