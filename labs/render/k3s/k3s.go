// Package k3s renders each node's /etc/rancher/k3s/config.yaml: IPv6 only, node-ip
// from the plan, flannel, kube-proxy, servicelb, traefik and the network policy
// controller off (Cilium does all of that), cluster and service CIDRs from the plan.
package k3s

import (
	"fmt"

	"sigs.k8s.io/yaml"

	"v6lab.dev/v6lab/labs/plan"
	"v6lab.dev/v6lab/labs/spec"
)

// Config is the subset of k3s's config file v6lab writes. Keys are k3s flag names.
type Config struct {
	Server               string   `json:"server,omitempty"`
	Token                string   `json:"token"`
	NodeName             string   `json:"node-name"`
	NodeIP               string   `json:"node-ip"`
	ClusterCIDR          string   `json:"cluster-cidr,omitempty"`
	ServiceCIDR          string   `json:"service-cidr,omitempty"`
	ClusterDNS           string   `json:"cluster-dns,omitempty"` // k3s runs its own CoreDNS there
	FlannelBackend       string   `json:"flannel-backend,omitempty"`
	DisableNetworkPolicy bool     `json:"disable-network-policy,omitempty"`
	DisableKubeProxy     bool     `json:"disable-kube-proxy,omitempty"`
	Disable              []string `json:"disable,omitempty"`
	TLSSAN               []string `json:"tls-san,omitempty"`
	KubeletArg           []string `json:"kubelet-arg,omitempty"`
	WriteKubeconfigMode  string   `json:"write-kubeconfig-mode,omitempty"`
}

// Path is where k3s reads its config inside a node.
const Path = "/etc/rancher/k3s/config.yaml"

// Token is the lab's join token. The lab is a local, disposable test bed.
func Token(p *plan.Plan) string { return "v6lab-" + p.Lab + "-join-token" }

// ForNode builds one node's config.
func ForNode(p *plan.Plan, n plan.KubeNode) Config {
	c := Config{
		Token:      Token(p),
		NodeName:   n.Name,
		NodeIP:     n.Address.String(),
		KubeletArg: []string{"node-ip=" + n.Address.String()},
	}
	if n.Role == spec.RoleServer {
		c.ClusterCIDR = p.Pods.Block.String()
		c.ServiceCIDR = p.ServiceCIDR.String()
		c.ClusterDNS = p.ClusterDNS.String()
		c.FlannelBackend = "none"
		c.DisableNetworkPolicy = true
		c.DisableKubeProxy = true
		c.Disable = []string{"servicelb", "traefik"}
		c.TLSSAN = []string{n.Address.String()}
		c.WriteKubeconfigMode = "0644"
		return c
	}
	c.Server = fmt.Sprintf("https://[%s]:6443", p.Server().Address)
	return c
}

// Marshal renders a config as YAML.
func Marshal(c Config) ([]byte, error) {
	b, err := yaml.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("encoding k3s config: %w", err)
	}
	return append([]byte("# Rendered by v6lab: "+Path+"\n"), b...), nil
}
