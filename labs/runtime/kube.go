package runtime

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	nodeconfig "v6lab.dev/v6lab/fixtures/node/config"
	"v6lab.dev/v6lab/labs/atomicfile"
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
	for _, ref := range slices.Sorted(slices.Values(refs)) {
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

// writeImportOrder tells the nodes in which order to import the archives of refs
// (nodeconfig.ImportOrder).
func writeImportOrder(labImages string, refs []string) error {
	var b strings.Builder
	for _, ref := range refs {
		b.WriteString(archiveName(ref) + "\n")
	}
	return atomicfile.Write(filepath.Join(labImages, nodeconfig.ImportOrder), []byte(b.String()), 0o644)
}

// waitImported waits until every Kubernetes node has imported the images of refs
// into its containerd (each node marks what it imported, nodeconfig.ImportedDir): the
// step that installs what runs them goes on then, and no pod meets a missing image. A
// failed import is reported at once, with the node's error.
func waitImported(ctx context.Context, p *plan.Plan, refs []string, timeout time.Duration) error {
	if len(refs) == 0 {
		return nil
	}
	wanted := map[string]string{} // archive name -> ref
	for _, ref := range refs {
		wanted[archiveName(ref)] = ref
	}
	deadline := time.Now().Add(timeout)
	for {
		var missing []string
		for _, n := range p.KubeNodes {
			out, err := docker(ctx, 30*time.Second, "exec", p.ContainerName(n.Name), "sh", "-c",
				"cd "+nodeconfig.ImportedDir+" 2>/dev/null && for f in *.failed; do [ -e \"$f\" ] && echo \"$f: $(cat \"$f\")\"; done; ls")
			if err != nil {
				missing = append(missing, fmt.Sprintf("%s: %v", n.Name, err))
				continue
			}
			have := map[string]bool{}
			for _, l := range strings.Split(out, "\n") {
				have[strings.TrimSpace(l)] = true
				if name, why, ok := strings.Cut(l, ".failed: "); ok && wanted[name] != "" {
					return fmt.Errorf("node %s could not import %s: %s", n.Name, name, why)
				}
			}
			for name, ref := range wanted {
				if !have[name] {
					missing = append(missing, n.Name+": "+ref)
				}
			}
		}
		if len(missing) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("images not imported after %s: %s", timeout, strings.Join(missing, ", "))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
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
