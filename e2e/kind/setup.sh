#!/usr/bin/env bash
# shorthop on kind (needs Docker, kind, kubectl and helm on PATH; run from anywhere):
#   1. a one-node kind cluster, with kwok (pinned release manifests) for fake GPU nodes;
#   2. the InferenceDeployment CRD, then the e2e suite against the cluster
#      (SHORTHOP_TEST_KUBECONFIG; the suite makes and removes its own nodes and Helm release);
#   3. for you to play with: the operator image built and loaded, the chart installed with the
#      operator pinned to the kind node, and the fake GPU cluster of `make demo`.
# The suite runs before step 3 because it needs the cluster's untainted GPU nodes to be its own.
# Environment: SKIP_TESTS=1 skips step 2; KIND_NODE_IMAGE pins the node image.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
NAME=shorthop
KWOK_VERSION=v0.7.0                                  # = e2e/controlplane/components.py
KWOK_URL="https://github.com/kubernetes-sigs/kwok/releases/download/${KWOK_VERSION}"
IMAGE=shorthop:kind
export KUBECONFIG="${ROOT}/e2e/kind/kubeconfig"      # git-ignored; `kind get kubeconfig` too
cd "${ROOT}"

say() { printf '==> %s\n' "$*"; }

say "kind cluster ${NAME} (kubeconfig ${KUBECONFIG})"
if ! kind get clusters | grep -qx "${NAME}"; then
  kind create cluster --name "${NAME}" --config e2e/kind/kind-config.yaml \
    --kubeconfig "${KUBECONFIG}" ${KIND_NODE_IMAGE:+--image "${KIND_NODE_IMAGE}"} --wait 120s
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
