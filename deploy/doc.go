// Package deploy holds no code. Its tests check what deploy/ ships — the
// Kubernetes manifests, the container image build and the systemd unit —
// without a cluster, a container engine or a running systemd, in a module of
// its own so that the Kubernetes and kustomize libraries they need never
// enter the alecrypt module.
package deploy
