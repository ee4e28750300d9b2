// Package node renders what each Kubernetes node of the upstream distribution runs
// with: /etc/v6lab/node.json, read by the node's entrypoint (fixtures/node), which
// starts containerd, the control plane (on the server) and the kubelet from it.
package node

import (
	"encoding/json"
	"fmt"

	"v6lab.dev/v6lab/fixtures/node/config"
	"v6lab.dev/v6lab/labs/plan"
	"v6lab.dev/v6lab/labs/spec"
)

// Config is one node's node.json (defined with the program that reads it).
type Config = config.Config

// Path is where a node reads its config.
const Path = config.Path

// Dir is where a node's files are rendered, relative to the run directory.
func Dir(node string) string { return "nodes/" + node }

// ForNode builds one node's config.
func ForNode(p *plan.Plan, n plan.KubeNode, sandboxImage string, runcWrapper bool) Config {
	return Config{
		Name: n.Name, Role: string(n.Role), NodeIP: n.Address.String(), ServerIP: p.Server().Address.String(),
		ServiceCIDR: p.ServiceCIDR.String(), ClusterCIDR: p.Pods.Block.String(), ClusterDNS: p.ClusterDNS.String(),
		SandboxImage: sandboxImage, RuncWrapper: runcWrapper,
	}
}

// Marshal renders a config.
func Marshal(c Config) ([]byte, error) {
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("node config: %w", err)
	}
	return append(b, '\n'), nil
}

// Applies reports whether the lab's nodes run the upstream distribution.
func Applies(s *spec.LabSpec) bool { return s.Versions.Kubernetes.Distribution == spec.DistUpstream }
