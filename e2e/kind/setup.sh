#!/usr/bin/env bash
# shorthop on kind (needs Docker, kind, kubectl and helm on PATH; run from anywhere):
#   1. a one-node kind cluster, with kwok (pinned release manifests) for fake GPU nodes;
#   2. the InferenceDeployment CRD, then the e2e suite against the cluster
#      (SHORTHOP_TEST_KUBECONFIG; the suite makes and removes its own nodes and Helm release);
#   3. for you to play with: the operator image built and loaded, the chart installed with the
#      operator pinned to the kind node, and the fake GPU cluster of `make demo`.
# The suite runs before step 3 because it needs the cluster's untainted GPU nodes to be its own.
# Environment: SKIP_TESTS=1 skips step 2; SHORTHOP_KUBERNETES_VERSION=1.35|1.36|1.37 picks the
# node image of that minor (default 1.37); KIND_NODE_IMAGE overrides the image altogether.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
NAME=shorthop
KWOK_VERSION=v0.8.0                                  # = e2e/controlplane/components.py
KWOK_URL="https://github.com/kubernetes-sigs/kwok/releases/download/${KWOK_VERSION}"
# Node images published with kind v0.33.0 (its release notes; pinned by digest, as kind asks).
# Needs kind >= v0.33.0. Not pulled or run on the development machines (no Docker there).
KIND_MIN_VERSION=v0.33.0
declare -A NODE_IMAGES=(
  [1.37]=kindest/node:v1.37.0@sha256:a1ed56cfb0e7b93589bdf97c8cd566405a265939e3620fc4f5de89adff580ae5
  [1.36]=kindest/node:v1.36.4@sha256:099e049362a1526b2db71494e1947aae99bd16290d7c895f2b7ea312e3cbfaed
  [1.35]=kindest/node:v1.35.8@sha256:07b2536e30b803ed61d1677a79df6115f798ce64c80f9e22f6ed45afd09323c0
)
MINOR="${SHORTHOP_KUBERNETES_VERSION:-1.37}"
MINOR="${MINOR#v}"
MINOR="$(cut -d. -f1,2 <<<"${MINOR}")"
if [[ -z "${KIND_NODE_IMAGE:-}" ]]; then
  if [[ -z "${NODE_IMAGES[${MINOR}]:-}" ]]; then
    echo "SHORTHOP_KUBERNETES_VERSION=${SHORTHOP_KUBERNETES_VERSION}: no kind node image for" \
      "Kubernetes ${MINOR}; supported: ${!NODE_IMAGES[*]} (or set KIND_NODE_IMAGE)" >&2
    exit 1
  fi
  KIND_NODE_IMAGE="${NODE_IMAGES[${MINOR}]}"
fi
IMAGE=shorthop:kind
export KUBECONFIG="${ROOT}/e2e/kind/kubeconfig"      # git-ignored; `kind get kubeconfig` too
cd "${ROOT}"

say() { printf '==> %s\n' "$*"; }

kind_version="$(kind version | awk '{print $2}')"   # "kind v0.33.0 go1.26.x linux/amd64"
if [[ "$(printf '%s\n%s\n' "${KIND_MIN_VERSION}" "${kind_version}" | sort -V | head -1)" \
      != "${KIND_MIN_VERSION}" ]]; then
  echo "kind ${kind_version} is older than ${KIND_MIN_VERSION}, which built ${KIND_NODE_IMAGE%@*}" >&2
  exit 1
fi

say "kind cluster ${NAME}, node image ${KIND_NODE_IMAGE%@*} (kubeconfig ${KUBECONFIG})"
if ! kind get clusters | grep -qx "${NAME}"; then
  kind create cluster --name "${NAME}" --config e2e/kind/kind-config.yaml \
    --kubeconfig "${KUBECONFIG}" --image "${KIND_NODE_IMAGE}" --wait 120s
fi
kind get kubeconfig --name "${NAME}" > "${KUBECONFIG}"

say "kwok ${KWOK_VERSION}: controller and fast stages"
kubectl apply -f "${KWOK_URL}/kwok.yaml"
kubectl apply -f "${KWOK_URL}/stage-fast.yaml"
kubectl -n kube-system rollout status deployment/kwok-controller --timeout=180s

say "InferenceDeployment CRD"
kubectl apply --server-side -f crds/inferencedeployments.shorthop.io.yaml
kubectl wait --for=condition=Established crd/inferencedeployments.shorthop.io --timeout=60s

make dev
if [[ "${SKIP_TESTS:-0}" != 1 ]]; then
  say "the e2e suite against kind"
  SHORTHOP_TEST_KUBECONFIG="${KUBECONFIG}" .venv/bin/python -m pytest e2e -q -p no:cacheprovider
fi

say "operator image ${IMAGE}, loaded into the kind node"
docker build -f operator/Dockerfile -t "${IMAGE}" .
kind load docker-image "${IMAGE}" --name "${NAME}"

say "the chart (operator pods on the kind node, not on fake GPU nodes)"
helm upgrade --install shorthop charts/shorthop -n shorthop-system --create-namespace \
  --set image.repository="${IMAGE%:*}" --set image.tag="${IMAGE#*:}" --set image.pullPolicy=Never \
  --set-json "nodeSelector={\"kubernetes.io/hostname\":\"${NAME}-control-plane\"}" --wait

say "fake GPU cluster: 2 GB200 NVL72 racks, 2 HGX H100 units, 4 L40S nodes, 5% busy"
kubectl create namespace background --dry-run=client -o yaml | kubectl apply -f -
.venv/bin/shorthop fake-cluster --nvl72-racks 2 --hgx-units 2 --nodes-per-unit 8 \
  --l40s-nodes 4 --occupancy 0.05 --seed 7 | kubectl apply -f -

cat <<DONE
Ready. Try:
  export KUBECONFIG=${KUBECONFIG}
  kubectl apply -f docs/examples/deepseek-nvl72.yaml -f docs/examples/llama-70b-h100.yaml
  kubectl get infd,pods -o wide
Remove it all with: kind delete cluster --name ${NAME}
DONE
