// Package deploy holds the deployment artifacts (Dockerfile, Kubernetes manifests,
// Kafka topic definitions, ClickHouse server config); its tests decode them strictly
// so a typo in a field name fails the build rather than a rollout.
package deploy
