"""The deployment files (docker/, k8s/), checked offline and tied to the code they deploy.

Two kinds of checks:
- the tools: `scripts/check_deploy.sh` renders every overlay and component with
  `kubectl kustomize`, validates the core resources with `kubernetes-validate --strict` against
  Kubernetes 1.32 and lints both Dockerfiles with `hadolint`;
- the ties: what the manifests and Dockerfiles say about the application must be true of the
  application: probe paths are routes it serves, commands parse with its CLI, every GATEWAY_*
  variable is one of its settings (and its value validates), the grace period covers its
  shutdown grace, the autoscaling metric is one it exports, the GPU overlay asks for exactly
  one GPU.

The tools come from the test extra (`pip install -e '.[test]'`); a test that needs a missing
binary is skipped with the reason.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from ..conftest import missing_tool

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
DOCKERFILES = {"cpu": ROOT / "docker" / "Dockerfile", "cuda": ROOT / "docker" / "Dockerfile.cuda"}
KUBE_VERSION = "1.32.0"

# Renderings: name -> (resources, components), paths relative to k8s/. The same combinations as
# scripts/check_deploy.sh; "stub:open-webui" is a minimal Open WebUI workload.
TARGETS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "base": (("base",), ()),
    "gpu": (("overlays/gpu",), ()),
    "cpu": (("overlays/cpu",), ()),
    "gpu+time-slicing": (("overlays/gpu",), ("components/time-slicing",)),
    "gpu+hpa+servicemonitor": (("overlays/gpu",), ("components/hpa", "components/servicemonitor")),
    "gpu+keda+servicemonitor": (
        ("overlays/gpu",),
        ("components/keda", "components/servicemonitor"),
    ),
    "cpu+hpa": (("overlays/cpu",), ("components/hpa",)),
    "open-webui": (("stub:open-webui",), ("open-webui",)),
}
GATEWAY_TARGETS = [t for t in TARGETS if t != "open-webui"]
OVERLAYS = ["gpu", "cpu"]

OPEN_WEBUI_STUB = {
    "apiVersion": "apps/v1",
    "kind": "StatefulSet",
    "metadata": {"name": "open-webui", "namespace": "open-webui"},
    "spec": {
        "serviceName": "open-webui",
        "selector": {"matchLabels": {"app.kubernetes.io/component": "open-webui"}},
        "template": {
            "metadata": {"labels": {"app.kubernetes.io/component": "open-webui"}},
            "spec": {"containers": [{"name": "open-webui", "image": "open-webui:main"}]},
        },
    },
}


# ----------------------------------------------------------------------------------- tools


def _tool(name: str) -> str | None:
    """The binary next to this interpreter (the project venv in CI), else on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    return shutil.which(name)


def _require(name: str) -> str:
    path = _tool(name)
    if path is None:
        missing_tool(f"`{name}` is not installed (the test extra has it: pip install -e '.[test]')")
    return path


@pytest.fixture(scope="session")
def render(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], list[dict]]:
    """Renders a target of TARGETS with `kubectl kustomize` (once per session)."""
    cache: dict[str, list[dict]] = {}

    def _render(name: str) -> list[dict]:
        if name not in cache:
            kubectl = _require("kubectl")
            resources, components = TARGETS[name]
            if len(resources) == 1 and not components and not resources[0].startswith("stub:"):
                src = K8S / resources[0]
            else:
                src = tmp_path_factory.mktemp(re.sub(r"\W", "-", name))
                rel = os.path.relpath(K8S, src)  # kustomize refuses absolute roots
                entries = []
                for item in resources:
                    if item == "stub:open-webui":
                        (src / "open-webui.yaml").write_text(yaml.safe_dump(OPEN_WEBUI_STUB))
                        entries.append("open-webui.yaml")
                    else:
                        entries.append(f"{rel}/{item}")
                kustomization = {
                    "apiVersion": "kustomize.config.k8s.io/v1beta1",
                    "kind": "Kustomization",
                    "resources": entries,
                    "components": [f"{rel}/{c}" for c in components],
                }
                (src / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
            proc = subprocess.run(
                [kubectl, "kustomize", str(src)], capture_output=True, text=True, timeout=120
            )
            assert proc.returncode == 0, f"kubectl kustomize {name} failed:\n{proc.stderr}"
            cache[name] = [d for d in yaml.safe_load_all(proc.stdout) if d]
        return cache[name]

    return _render


def _one(docs: list[dict], kind: str, name: str | None = None) -> dict:
    found = [
        d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)
    ]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def _deployment(docs: list[dict]) -> dict:
    return _one(docs, "Deployment", "gateway")


def _pod(docs: list[dict]) -> dict:
    return _deployment(docs)["spec"]["template"]["spec"]


def _containers(pod: dict) -> Iterator[dict]:
    yield from pod.get("initContainers", [])
    yield from pod["containers"]


def _main(pod: dict) -> dict:
    return next(c for c in pod["containers"] if c["name"] == "gateway")


def _configmap_env(docs: list[dict]) -> dict[str, str]:
    """The settings the gateway container gets from its ConfigMap(s) through envFrom."""
    main = _main(_pod(docs))
    names = [e["configMapRef"]["name"] for e in main.get("envFrom", []) if "configMapRef" in e]
    data: dict[str, str] = {}
    for name in names:
        data.update(_one(docs, "ConfigMap", name).get("data", {}))
    return data


def _literal_env(container: dict) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}


def _dockerfile(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):  # a comment inside a continued instruction
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        keyword, _, rest = full.partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
    return instructions


def _docker_env(path: Path) -> dict[str, str]:
    env: dict[str, str] = {}
    for keyword, rest in _dockerfile(path):
        if keyword == "ENV":
            for token in shlex.split(rest):
                key, _, value = token.partition("=")
                env[key] = value
    return env


def _docker_json(path: Path, keyword: str) -> list[str]:
    """The last exec-form (JSON) value of an instruction; HEALTHCHECK's after its CMD."""
    values = [rest for k, rest in _dockerfile(path) if k == keyword]
    assert values, f"{path.name} has no {keyword}"
    text = values[-1]
    if keyword == "HEALTHCHECK":
        text = text[text.index("CMD") + 3 :]
    return json.loads(text)


# ----------------------------------------------------------------------------------- the app


@pytest.fixture(scope="module")
def app():
    from gateway.app import create_app

    return create_app()


@pytest.fixture(scope="module")
def serves(app) -> Callable[[str], bool]:
    """Whether the app routes `GET path` to a handler, asked of its own router (the same
    matching a request goes through, whatever the nesting of included routers)."""
    from starlette.routing import Match

    def _serves(path: str) -> bool:
        scope = {"type": "http", "method": "GET", "path": path, "root_path": "",
                 "headers": [], "query_string": b""}  # fmt: skip
        return any(route.matches(scope)[0] == Match.FULL for route in app.router.routes)

    assert not _serves("/no-such-route")
    return _serves


@pytest.fixture(scope="module")
def settings_env() -> dict[str, str]:
    """Every setting's environment variable and its default, from the settings tree."""
    from gateway.config import env_vars

    return {env: default for env, default, _ in env_vars()}


def _parse_cli(argv: list[str]) -> None:
    from gateway.cli import build_parser

    try:
        build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse exits on an unknown command or option
        pytest.fail(f"`gateway {' '.join(argv)}` is not a valid CLI invocation (exit {exc.code})")


# ----------------------------------------------------------------------------------- tools


@pytest.mark.slow
def test_check_deploy_script_passes() -> None:
    """Render + strict validation + hadolint, exactly as CI runs them."""
    for name in ("kubectl", "kubernetes-validate", "hadolint"):
        _require(name)
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / "check_deploy.sh")],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, f"check_deploy.sh failed:\n{proc.stdout}\n{proc.stderr}"
    assert "all checks passed" in proc.stdout


def test_strict_validation_rejects_unknown_fields(tmp_path: Path) -> None:
    """The strict pass is not vacuous: a misspelt field fails it."""
    validate = _require("kubernetes-validate")
    doc = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "x"},
        "spec": {"ports": [{"port": 8000}], "selectr": {"a": "b"}},
    }
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(doc))
    proc = subprocess.run(
        [validate, "--strict", "--quiet", "-k", KUBE_VERSION, str(path)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode != 0, proc.stdout


@pytest.mark.parametrize("flavour", sorted(DOCKERFILES))
def test_hadolint(flavour: str) -> None:
    hadolint = _require("hadolint")
    args = [hadolint]
    config = ROOT / "docker" / ".hadolint.yaml"
    if config.exists():
        args += ["--config", str(config)]
    proc = subprocess.run(
        [*args, str(DOCKERFILES[flavour])], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


# ----------------------------------------------------------------------------------- GPU / CPU


def test_gpu_overlay_requests_exactly_one_gpu(render) -> None:
    pod = _pod(render("gpu"))
    main = _main(pod)
    limits = main["resources"]["limits"]
    assert int(limits["nvidia.com/gpu"]) == 1
    # Extended resources may be requested only as much as limited (or left to default).
    assert int(main["resources"].get("requests", {}).get("nvidia.com/gpu", 1)) == 1
    others = [
        c["name"] for c in _containers(pod) if c is not main and "nvidia.com/gpu" in json.dumps(c)
    ]
    assert not others, f"only the server asks for the GPU, not {others}"
    assert pod["runtimeClassName"] == "nvidia"
    assert any(t.get("key") == "nvidia.com/gpu" for t in pod.get("tolerations", []))
    assert _deployment(render("gpu"))["spec"]["strategy"]["type"] == "Recreate"
    assert _deployment(render("gpu"))["spec"]["replicas"] == 1
    config = _configmap_env(render("gpu"))
    assert config["GATEWAY_KOKORO__PLACEMENT"] == "auto"
    assert config["GATEWAY_WHISPER__PLACEMENT"] == "auto"


def test_cpu_overlay_requests_no_gpu(render) -> None:
    docs = render("cpu")
    pod = _pod(docs)
    assert "nvidia.com/gpu" not in json.dumps(pod)
    assert "runtimeClassName" not in pod
    assert not any("nvidia" in json.dumps(t) for t in pod.get("tolerations", []))
    config = _configmap_env(docs)
    assert config["GATEWAY_KOKORO__PLACEMENT"] == "cpu"
    assert config["GATEWAY_WHISPER__PLACEMENT"] == "cpu"


def test_cuda_image_installs_onnxruntime_gpu_alone() -> None:
    """kokoro-onnx pulls the CPU `onnxruntime`; it must be gone before the GPU build goes in,
    and the GPU build must be the CUDA 12 one that matches ctranslate2's CUDA."""
    instructions = _dockerfile(DOCKERFILES["cuda"])
    text = "\n".join(rest for _, rest in instructions)
    uninstall = text.index("pip uninstall -y onnxruntime")
    install = text.index('pip install --no-cache-dir "onnxruntime-gpu==${ORT_GPU_VERSION}"')
    assert uninstall < install
    args = dict(
        rest.split("=", 1) for keyword, rest in instructions if keyword == "ARG" and "=" in rest
    )
    assert args["ORT_GPU_VERSION"] == "1.26.0"  # the last onnxruntime-gpu built for CUDA 12
    assert re.match(r"nvidia/cuda:12\.\d+\.\d+-cudnn-runtime-", args["CUDA_IMAGE"])
    assert "1.26.0" in (ROOT / "docs" / "deploy.md").read_text()


# ----------------------------------------------------------------------------------- the app


@pytest.mark.parametrize("target", GATEWAY_TARGETS)
def test_probes_hit_served_routes_on_the_container_port(render, serves, target) -> None:
    main = _main(_pod(render(target)))
    ports = {p["name"]: p["containerPort"] for p in main["ports"]}
    assert ports == {"http": 8000, "wyoming": 10300}
    probes = {k: main[k] for k in ("startupProbe", "readinessProbe", "livenessProbe")}
    assert probes["livenessProbe"]["httpGet"]["path"] == "/health"
    assert probes["readinessProbe"]["httpGet"]["path"] == "/ready"
    for kind, probe in probes.items():
        path, port = probe["httpGet"]["path"], probe["httpGet"]["port"]
        assert serves(path), f"{kind}: the app serves no GET {path}"
        assert ports.get(port, port) == 8000, f"{kind} port {port} is not the container port"


@pytest.mark.parametrize("target", GATEWAY_TARGETS)
def test_wyoming_port_is_served_exposed_and_admitted_only_to_home_assistant(render, target) -> None:
    """Wyoming has no authentication: the Service exposes the port the gateway listens on, and
    the NetworkPolicy admits it from Home Assistant (and labelled clients), not from anyone."""
    docs = render(target)
    assert _configmap_env(docs).get("GATEWAY_WYOMING__PORT", "10300") == "10300"
    service = next(d for d in docs if d["kind"] == "Service" and d["metadata"]["name"] == "gateway")
    assert {"name": "wyoming", "port": 10300, "targetPort": "wyoming", "protocol": "TCP"} in (
        service["spec"]["ports"]
    )
    policy = next(d for d in docs if d["kind"] == "NetworkPolicy")
    rules = [r for r in policy["spec"]["ingress"]
             if any(p["port"] == "wyoming" for p in r.get("ports", []))]  # fmt: skip
    assert len(rules) == 1
    (rule,) = rules
    labels = [f["podSelector"]["matchLabels"] for f in rule["from"]]
    assert {"app.kubernetes.io/name": "home-assistant"} in labels
    assert all(f.get("podSelector", {}).get("matchLabels") for f in rule["from"])


def _serve_binds(argv: list[str], settings: Any) -> tuple[str, int]:
    """Where `gateway <argv>` (a serve command) listens under `settings`, by the CLI's own rule."""
    from gateway.cli import bind_address, build_parser

    args = build_parser().parse_args(argv)
    assert args.command == "serve", argv
    return bind_address(args, settings)


def _health_check_port(path: Path, env: dict[str, str]) -> int:
    """The port the Dockerfile's HEALTHCHECK probes under `env`, by running its Python with
    urlopen caught (the command is `python -c CODE`)."""
    command = _docker_json(path, "HEALTHCHECK")
    assert command[:2] == ["python", "-c"], command
    opened: list[str] = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(os, "environ", dict(env))
        mp.setattr(urllib.request, "urlopen", lambda url, **_: opened.append(url))
        exec(command[2], {})  # the image's own health check, against no server
    assert len(opened) == 1, opened
    port = urlsplit(opened[0]).port
    assert port is not None, opened
    return port


@pytest.mark.parametrize("port", ["8000", "9000"])
def test_dockerfile_serves_where_its_health_check_probes(port: str, monkeypatch) -> None:
    """`docker run -e GATEWAY_SERVER__PORT=9000`: the default command listens on 9000, the port the
    health check probes (a `--port 8000` in CMD won over the setting and the container turned
    unhealthy)."""
    from gateway.config import Settings

    for path in DOCKERFILES.values():
        for key in [k for k in os.environ if k.startswith("GATEWAY_")]:
            monkeypatch.delenv(key)
        env = {**_docker_env(path), "GATEWAY_SERVER__PORT": port}
        for key, value in env.items():
            if key.startswith("GATEWAY_"):
                monkeypatch.setenv(key, value)
        settings = Settings(_env_file=None)
        host, served = _serve_binds(_docker_json(path, "CMD"), settings)
        assert (host, served) == ("0.0.0.0", int(port)), path.name
        assert _health_check_port(path, env) == served, path.name


@pytest.mark.parametrize("target", GATEWAY_TARGETS)
def test_pod_serves_on_the_configmap_port(render, target, monkeypatch) -> None:
    """The pod's command passes no flag that hides the ConfigMap's GATEWAY_SERVER__HOST/PORT:
    changed there, the server moves with it."""
    from gateway.config import Settings

    docs = render(target)
    main = _main(_pod(docs))
    for key in [k for k in os.environ if k.startswith("GATEWAY_")]:
        monkeypatch.delenv(key)
    env = {**_configmap_env(docs), **_literal_env(main)}
    env.update(GATEWAY_SERVER__PORT="9000", GATEWAY_SERVER__HOST="10.1.2.3")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = Settings(_env_file=None)
    assert _serve_binds(main["command"][1:] + main["args"], settings) == ("10.1.2.3", 9000)


def test_serve_without_flags_listens_on_the_port_setting(tmp_path: Path) -> None:
    """A real `gateway serve` started as the image starts it (its CMD, no flags) with
    GATEWAY_SERVER__PORT set, then the image's health check run as the container runs it."""
    from ..conftest import free_port

    port = str(free_port())
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_SERVER__")}
    env.update(GATEWAY_SERVER__PORT=port, GATEWAY_SERVER__HOST="127.0.0.1",
               GATEWAY_WYOMING__PORT="0")  # fmt: skip
    gateway = Path(sys.executable).parent / "gateway"
    cmd = [str(gateway), *_docker_json(DOCKERFILES["cpu"], "CMD")]
    health = [sys.executable, *_docker_json(DOCKERFILES["cpu"], "HEALTHCHECK")[1:]]
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        while True:
            check = subprocess.run(health, env=env, capture_output=True, timeout=30)
            if check.returncode == 0:
                break
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()[-2000:]
            assert time.monotonic() < deadline, check.stderr.decode()[-2000:]
            time.sleep(0.5)
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        log.close()


def test_dockerfile_healthcheck_hits_a_served_route(serves) -> None:
    for path in DOCKERFILES.values():
        command = " ".join(_docker_json(path, "HEALTHCHECK"))
        assert "/health'" in command and serves("/health")
        assert _docker_env(path)["GATEWAY_SERVER__PORT"] == "8000"


@pytest.mark.parametrize("target", GATEWAY_TARGETS)
def test_container_commands_are_cli_invocations(render, target) -> None:
    for container in _containers(_pod(render(target))):
        command = container.get("command", []) + container.get("args", [])
        assert command and command[0] == "gateway", f"{container['name']}: {command}"
        _parse_cli(command[1:])
    init = [c["args"] for c in _pod(render(target)).get("initContainers", [])]
    assert init == [["models", "pull"], ["models", "verify"]]


def test_dockerfile_entrypoint_is_a_cli_invocation() -> None:
    for path in DOCKERFILES.values():
        entrypoint = _docker_json(path, "ENTRYPOINT")
        assert entrypoint == ["gateway"]
        _parse_cli(_docker_json(path, "CMD"))


def test_every_gateway_variable_is_a_setting(render, settings_env) -> None:
    used: dict[str, str] = {}
    for target in GATEWAY_TARGETS:
        docs = render(target)
        for doc in docs:
            if doc["kind"] == "ConfigMap":
                for key in doc.get("data", {}):
                    if key.startswith("GATEWAY_"):
                        used[key] = f"{target}: ConfigMap {doc['metadata']['name']}"
        for container in _containers(_pod(docs)):
            for entry in container.get("env", []):
                if entry["name"].startswith("GATEWAY_"):
                    used[entry["name"]] = f"{target}: container {container['name']}"
    for path in DOCKERFILES.values():
        for key in _docker_env(path):
            if key.startswith("GATEWAY_"):
                used[key] = f"docker/{path.name}"
    unknown = {k: where for k, where in used.items() if k not in settings_env}
    assert not unknown, f"not settings of gateway.config: {unknown}"
    assert len(used) >= 10


@pytest.mark.parametrize("target", GATEWAY_TARGETS)
def test_settings_values_validate_and_match_the_pod(render, target, monkeypatch) -> None:
    """The ConfigMap's values load into Settings, and agree with the pod around them."""
    from gateway.config import Settings

    docs = render(target)
    pod = _pod(docs)
    main = _main(pod)
    for key in [k for k in os.environ if k.startswith("GATEWAY_")]:
        monkeypatch.delenv(key)
    env = {**_configmap_env(docs), **_literal_env(main)}
    env["GATEWAY_SCHEDULER__CORES"] = "4"  # from the downward API (limits.cpu) in the pod
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = Settings(_env_file=None)

    assert settings.server.host == "0.0.0.0"
    assert settings.server.port == main["ports"][0]["containerPort"]
    assert _serve_binds(main["command"][1:] + main["args"], settings)[1] == settings.server.port
    mounts = {m["name"]: m["mountPath"] for m in main["volumeMounts"]}
    assert str(settings.models.dir) == mounts["models"]
    assert settings.server.api_keys_file is not None
    assert str(settings.server.api_keys_file.parent) == mounts["api-keys"]
    keys = next(v for v in pod["volumes"] if v["name"] == "api-keys")["secret"]
    assert keys["optional"] is True
    assert {i["path"] for i in keys.get("items", [])} <= {settings.server.api_keys_file.name}
    assert settings.models.allow_download is False
    # The init containers work on the same settings and volume as the server.
    for init in pod["initContainers"]:
        assert init["envFrom"] == main["envFrom"]
        assert {m["name"]: m["mountPath"] for m in init["volumeMounts"]}["models"] == mounts[
            "models"
        ]
    # Threads are planned for the pod's CPU limit, not the node's cores.
    cores = next(e for e in main["env"] if e["name"] == "GATEWAY_SCHEDULER__CORES")
    assert cores["valueFrom"]["resourceFieldRef"]["resource"] == "limits.cpu"


def test_optional_api_key_secret_may_be_absent(render, tmp_path, monkeypatch) -> None:
    """The key Secret is mounted with optional: true; without it the file is missing and the
    gateway must still start (no key required), not crash on the missing file."""
    from gateway.config import Settings

    keys = next(v for v in _pod(render("gpu"))["volumes"] if v["name"] == "api-keys")
    assert keys["secret"]["optional"] is True
    monkeypatch.setenv("GATEWAY_SERVER__API_KEYS", "")
    monkeypatch.setenv("GATEWAY_SERVER__API_KEYS_FILE", str(tmp_path / "keys" / "api-keys"))
    assert Settings(_env_file=None).api_keys() == []


@pytest.mark.parametrize("target", GATEWAY_TARGETS)
def test_termination_grace_covers_shutdown_grace(render, settings_env, target) -> None:
    docs = render(target)
    pod = _pod(docs)
    main = _main(pod)
    grace = float(
        _configmap_env(docs).get(
            "GATEWAY_SERVER__SHUTDOWN_GRACE_S", settings_env["GATEWAY_SERVER__SHUTDOWN_GRACE_S"]
        )
    )
    pre_stop = main.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
    assert pod["terminationGracePeriodSeconds"] > grace + pre_stop


def test_autoscalers_use_metrics_the_app_exports(render, app) -> None:
    exported = {metric.name for metric in app.state.gateway.metrics_registry.collect()}
    hpa = _one(render("gpu+hpa+servicemonitor"), "HorizontalPodAutoscaler")
    for metric in hpa["spec"]["metrics"]:
        assert metric["pods"]["metric"]["name"] in exported
    scaled = _one(render("gpu+keda+servicemonitor"), "ScaledObject")
    series = re.compile(r"\b(gateway_[a-z_]+?)(?:_bucket|_sum|_count)?\b")
    for trigger in scaled["spec"]["triggers"]:
        names = set(series.findall(trigger["metadata"]["query"]))
        assert names and names <= exported, f"{names - exported} not exported"
    adapter = K8S / "components" / "hpa" / "prometheus-adapter-rules.yaml"
    rule = yaml.safe_load(adapter.read_text())["rules"]["custom"][0]
    assert rule["name"]["as"] == hpa["spec"]["metrics"][0]["pods"]["metric"]["name"]


# ----------------------------------------------------------------------------------- shape


@pytest.mark.parametrize("target", GATEWAY_TARGETS)
def test_pod_is_locked_down(render, target) -> None:
    pod = _pod(render(target))
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert pod["automountServiceAccountToken"] is False
    assert pod["enableServiceLinks"] is False  # no GATEWAY_SERVICE_HOST & co. in the settings
    tmp = next(v for v in pod["volumes"] if v["name"] == "tmp")
    assert "emptyDir" in tmp
    for container in _containers(pod):
        sc = container["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True, container["name"]
        assert sc["allowPrivilegeEscalation"] is False, container["name"]
        assert sc["capabilities"]["drop"] == ["ALL"], container["name"]
        # Read-only root: the phonemizer's temp copy and HOME need the writable /tmp.
        assert {m["mountPath"]: m["name"] for m in container["volumeMounts"]}["/tmp"] == "tmp"
        assert _literal_env(container)["HOME"].startswith("/tmp")
        assert container["resources"]["limits"]["memory"]
    for path in DOCKERFILES.values():
        user = [rest for keyword, rest in _dockerfile(path) if keyword == "USER"][-1]
        assert user.split(":")[0] == str(pod["securityContext"]["runAsUser"])


@pytest.mark.parametrize("target", GATEWAY_TARGETS)
def test_selectors_and_network_policy(render, target) -> None:
    docs = render(target)
    labels = _deployment(docs)["spec"]["template"]["metadata"]["labels"]
    service = _one(docs, "Service", "gateway")
    assert service["spec"]["selector"].items() <= labels.items()
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    policy = _one(docs, "NetworkPolicy", "gateway")
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= labels.items()
    peers = [peer for rule in policy["spec"]["ingress"] for peer in rule["from"]]
    open_webui = [
        p for p in peers
        if p.get("podSelector", {}).get("matchLabels") == {"app.kubernetes.io/name": "open-webui"}
    ]  # fmt: skip
    assert open_webui and open_webui[0]["namespaceSelector"] == {}, "Open WebUI, any namespace"
    assert any(
        p.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/name")
        == "prometheus"
        for p in peers
    )
    for rule in policy["spec"]["ingress"]:  # Wyoming's own rule: see the test above
        assert [p["port"] for p in rule["ports"]] in (["http"], ["wyoming"])
    pdb = _one(docs, "PodDisruptionBudget", "gateway")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    annotations = _deployment(docs)["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/path"] == "/metrics"


@pytest.mark.parametrize("target", ["gpu+hpa+servicemonitor", "gpu+keda+servicemonitor", "cpu+hpa"])
def test_scale_out_gives_each_replica_its_own_models(render, target) -> None:
    docs = render(target)
    deployment = _deployment(docs)
    assert "replicas" not in deployment["spec"], "apply would reset the autoscaler"
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxSurge"] == 0
    assert not [d for d in docs if d["kind"] == "PersistentVolumeClaim"]
    models = next(v for v in _pod(docs)["volumes"] if v["name"] == "models")
    assert set(models) == {"name", "emptyDir"}


def test_time_slicing_fails_requests_greater_than_one(render) -> None:
    config = _one(render("gpu+time-slicing"), "ConfigMap", "time-slicing-config")
    assert config["metadata"]["namespace"] == "gpu-operator-resources"
    for text in config["data"].values():
        sharing = yaml.safe_load(text)["sharing"]["timeSlicing"]
        assert sharing["failRequestsGreaterThanOne"] is True
        assert [r["name"] for r in sharing["resources"]] == ["nvidia.com/gpu"]


def test_open_webui_points_at_the_gateway_service(render) -> None:
    gateway = render("gpu")
    service = _one(gateway, "Service", "gateway")
    meta = service["metadata"]
    expected_host = f"{meta['name']}.{meta['namespace']}.svc.cluster.local"
    expected_port = service["spec"]["ports"][0]["port"]

    patched = _one(render("open-webui"), "StatefulSet", "open-webui")
    template = patched["spec"]["template"]
    assert template["metadata"]["labels"]["app.kubernetes.io/name"] == "open-webui"
    container = template["spec"]["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    values = yaml.safe_load((K8S / "open-webui" / "values-audio.yaml").read_text())
    assert {e["name"]: e for e in values["extraEnvVars"]} == env, "Helm values and patch differ"

    literal = _literal_env(container)
    assert literal["AUDIO_TTS_ENGINE"] == literal["AUDIO_STT_ENGINE"] == "openai"
    assert literal["AUDIO_TTS_MODEL"] == "tts-1"
    assert literal["AUDIO_TTS_VOICE"] == "alloy"
    assert literal["AUDIO_STT_MODEL"] == "whisper-1"
    for key in ("AUDIO_TTS_OPENAI_API_BASE_URL", "AUDIO_STT_OPENAI_API_BASE_URL"):
        url = urlsplit(literal[key])
        assert (url.scheme, url.hostname, url.port, url.path) == (
            "http", expected_host, expected_port, "/v1",
        )  # fmt: skip
    for key in ("AUDIO_TTS_OPENAI_API_KEY", "AUDIO_STT_OPENAI_API_KEY"):
        assert env[key]["valueFrom"]["secretKeyRef"]["optional"] is True
