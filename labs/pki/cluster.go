package pki

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"

	"v6lab.dev/v6lab/labs/plan"
)

// Layout of a lab's PKI inside its run directory.
const (
	Dir = "pki"
	// NodeDir holds, per node, exactly the files that node needs; it is bind-mounted
	// read-only at /etc/v6lab/pki inside the node.
	NodeDir = "pki/nodes"
	// AdminKubeconfig is the cluster-admin kubeconfig for the host (management address).
	AdminKubeconfig = "kubeconfig"
	// InNode is where a node sees its PKI directory.
	InNode = "/etc/v6lab/pki"
)

// ClusterName names the cluster in kubeconfigs.
func ClusterName(p *plan.Plan) string { return "v6lab-" + p.Lab }

// APIServerPort is the API server's secure port.
const APIServerPort = 6443

func url(a netip.Addr) string { return fmt.Sprintf("https://%s", netip.AddrPortFrom(a, APIServerPort)) }

// EnsureCluster writes the cluster's PKI under dir (the lab's run directory) unless it is
// there already, and returns the path of the host's admin kubeconfig.
func EnsureCluster(dir string, p *plan.Plan) (string, error) {
	admin := filepath.Join(dir, AdminKubeconfig)
	if _, err := os.Stat(filepath.Join(dir, Dir, "ca.crt")); err == nil {
		return admin, nil
	}
	server := p.Server()
	if server == nil {
		return "", fmt.Errorf("pki: the lab has no server node")
	}
	ca, err := NewCA(ClusterName(p) + " CA")
	if err != nil {
		return "", err
	}
	caKey, err := ca.KeyPEM()
	if err != nil {
		return "", err
	}
	saPub, saKey, err := ServiceAccountKeys()
	if err != nil {
		return "", err
	}
	mgmt := p.Management.Addresses[server.Name]
	kubeSvc := p.ServiceCIDR.Addr().Next() // the first ClusterIP is the "kubernetes" service
	apiserver, err := ca.Issue(Request{CommonName: "kube-apiserver", Server: true,
		DNSNames: []string{"kubernetes", "kubernetes.default", "kubernetes.default.svc",
			"kubernetes.default.svc.cluster.local", "localhost", server.Name},
		IPs: []netip.Addr{server.Address, mgmt, kubeSvc, netip.IPv6Loopback()}})
	if err != nil {
		return "", err
	}
	kubeletClient, err := ca.Issue(Request{CommonName: "kube-apiserver-kubelet-client", Organization: []string{"system:masters"}})
	if err != nil {
		return "", err
	}
	issueConf := func(user string, org []string, at netip.Addr) ([]byte, error) {
		pair, err := ca.Issue(Request{CommonName: user, Organization: org})
		if err != nil {
			return nil, err
		}
		return Kubeconfig(ClusterName(p), url(at), ca.PEM, user, pair), nil
	}
	files := map[string][]byte{}
	private := map[string]bool{}
	put := func(path string, data []byte, secret bool) {
		files[path] = data
		private[path] = secret
	}
	put(filepath.Join(Dir, "ca.crt"), ca.PEM, false)
	put(filepath.Join(Dir, "ca.key"), caKey, true)

	adminConf, err := issueConf("kubernetes-admin", []string{"system:masters"}, mgmt)
	if err != nil {
		return "", err
	}
	put(AdminKubeconfig, adminConf, true)

	for _, n := range p.KubeNodes {
		nd := filepath.Join(NodeDir, n.Name)
		put(filepath.Join(nd, "ca.crt"), ca.PEM, false)
		kubelet, err := issueConf("system:node:"+n.Name, []string{"system:nodes"}, server.Address)
		if err != nil {
			return "", err
		}
		put(filepath.Join(nd, "kubelet.conf"), kubelet, true)
		if n.Name != server.Name {
			continue
		}
		put(filepath.Join(nd, "ca.key"), caKey, true)
		put(filepath.Join(nd, "sa.pub"), saPub, false)
		put(filepath.Join(nd, "sa.key"), saKey, true)
		put(filepath.Join(nd, "apiserver.crt"), apiserver.Cert, false)
		put(filepath.Join(nd, "apiserver.key"), apiserver.Key, true)
		put(filepath.Join(nd, "apiserver-kubelet-client.crt"), kubeletClient.Cert, false)
		put(filepath.Join(nd, "apiserver-kubelet-client.key"), kubeletClient.Key, true)
		local := netip.IPv6Loopback()
		for user, file := range map[string]string{
			"system:kube-controller-manager": "controller-manager.conf",
			"system:kube-scheduler":          "scheduler.conf",
		} {
			conf, err := issueConf(user, nil, local)
			if err != nil {
				return "", err
			}
			put(filepath.Join(nd, file), conf, true)
		}
		adminLocal, err := issueConf("kubernetes-admin", []string{"system:masters"}, local)
		if err != nil {
			return "", err
		}
		put(filepath.Join(nd, "admin.conf"), adminLocal, true)
	}
	// ca.crt last: its presence marks a complete PKI.
	for path, data := range files {
		if path == filepath.Join(Dir, "ca.crt") {
			continue
		}
		if err := write(filepath.Join(dir, path), data, private[path]); err != nil {
			return "", err
		}
	}
	return admin, write(filepath.Join(dir, Dir, "ca.crt"), ca.PEM, false)
}
