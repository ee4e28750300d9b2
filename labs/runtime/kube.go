package runtime

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"v6lab.dev/v6lab/labs/plan"
	"v6lab.dev/v6lab/labs/xexec"
)

// Client returns a Kubernetes client for a lab from its admin kubeconfig.
func Client(kubeconfig string) (*kubernetes.Clientset, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w", kubeconfig, err)
	}
	cfg.Timeout = 10 * time.Second
	return kubernetes.NewForConfig(cfg)
}

// NodeState is what the API says of one node.
type NodeState struct {
	Name       string `json:"name"`
	InternalIP string `json:"internalIP"`
	Ready      bool   `json:"ready"`
	Reason     string `json:"reason,omitempty"`
}

func nodeStates(ctx context.Context, c *kubernetes.Clientset) (map[string]NodeState, error) {
	list, err := c.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	out := map[string]NodeState{}
	for _, n := range list.Items {
		st := NodeState{Name: n.Name}
		for _, a := range n.Status.Addresses {
			if a.Type == corev1.NodeInternalIP {
				st.InternalIP = a.Address
			}
		}
		for _, cond := range n.Status.Conditions {
			if cond.Type == corev1.NodeReady {
				st.Ready = cond.Status == corev1.ConditionTrue
				st.Reason = cond.Reason
			}
		}
		out[n.Name] = st
	}
	return out, nil
}

// waitNodes waits until every planned node is registered under its planned GUA. (Nodes
// are Ready only once a CNI runs.) On timeout the error says which nodes are missing
// and shows the tail of their kubelet logs.
func waitNodes(ctx context.Context, p *plan.Plan, kubeconfig string, timeout time.Duration) (map[string]NodeState, error) {
	c, err := Client(kubeconfig)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(timeout)
	var lastErr error
	for {
		states, err := nodeStates(ctx, c)
		lastErr = err
		var missing []string
		if err == nil {
			for _, n := range p.KubeNodes {
				st, ok := states[n.Name]
				if !ok || st.InternalIP != n.Address.String() {
					missing = append(missing, n.Name)
				}
			}
			if len(missing) == 0 {
				return states, nil
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			var b strings.Builder
			if lastErr != nil {
				fmt.Fprintf(&b, "the API server did not answer within %s: %v", timeout, lastErr)
				missing = []string{p.Server().Name}
			} else {
				fmt.Fprintf(&b, "nodes not registered under their planned address within %s: %s", timeout, strings.Join(missing, ", "))
				for _, m := range missing {
					if st, ok := states[m]; ok {
						fmt.Fprintf(&b, "\n  %s registered with InternalIP %s", m, st.InternalIP)
					}
				}
			}
			for _, m := range missing {
				for _, log := range []string{"kubelet", "kube-apiserver"} {
					out, _ := xexec.Run(ctx, xexec.Cmd{Name: "docker", Timeout: 10 * time.Second,
						Args: []string{"exec", p.ContainerName(m), "tail", "-n", "8", "/var/log/v6lab/" + log + ".log"}})
					if strings.TrimSpace(out) != "" {
						fmt.Fprintf(&b, "\n  last %s log lines of %s:\n    %s", log, m, strings.ReplaceAll(strings.TrimSpace(out), "\n", "\n    "))
					}
				}
			}
			return states, errors.New(b.String())
		}
		time.Sleep(2 * time.Second)
	}
}

// Kubeconfig is the path of a lab's admin kubeconfig.
func (o Options) Kubeconfig(lab string) string { return filepath.Join(o.LabDir(lab), "kubeconfig") }

// archiveImages saves the images every node loads (docker save), once per image key,
// into the cache, and links them into the lab's images directory.
func archiveImages(ctx context.Context, refs []string, cacheDir, labImages string) error {
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return err
	}
	if err := os.MkdirAll(labImages, 0o755); err != nil {
		return err
	}
	sort.Strings(refs)
	for _, ref := range refs {
		name := archiveName(ref)
		cached := filepath.Join(cacheDir, name)
		if _, err := os.Stat(cached); err != nil {
			tmp := cached + ".tmp"
			if _, err := xexec.Run(ctx, xexec.Cmd{Name: "docker", Args: []string{"save", "-o", tmp, ref}, Timeout: 10 * time.Minute}); err != nil {
				return err
			}
			if err := os.Rename(tmp, cached); err != nil {
				return err
			}
		}
		dst := filepath.Join(labImages, name)
		_ = os.Remove(dst)
		if err := os.Link(cached, dst); err != nil {
			// Another filesystem: copy.
			data, rerr := os.ReadFile(cached)
			if rerr != nil {
				return rerr
			}
			if werr := os.WriteFile(dst, data, 0o644); werr != nil {
				return werr
			}
		}
	}
	return nil
}

// archiveName is the file an image's archive has in the cache and in a lab's image
// directory (which every node sees at /var/lib/v6lab/images).
func archiveName(ref string) string {
	return strings.NewReplacer("/", "_", ":", "_").Replace(ref) + ".tar"
}

// CacheDir is v6lab's cache ($XDG_CACHE_HOME/v6lab or ~/.cache/v6lab).
func CacheDir() string {
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "v6lab")
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".cache", "v6lab")
}
