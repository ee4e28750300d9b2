package runtime

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"v6lab.dev/v6lab/fixtures"
	"v6lab.dev/v6lab/labs/images"
	"v6lab.dev/v6lab/labs/lab"
)

// volatile are /proc/sys entries that change by themselves.
var volatile = regexp.MustCompile(`random/|ns_last_pid|sched_domain|tainted|/nr_|stat_|dentry-state|inode|file-nr|pty/nr|vm/stat|hung_task_detect_count|warn_count|oops_count|quota/syncs`)

// hostSysctls reads the host-wide kernel settings a node could reach.
func hostSysctls(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, root := range []string{"/proc/sys/kernel", "/proc/sys/vm", "/proc/sys/fs", "/proc/sys/net/core"} {
		_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || volatile.MatchString(p) {
				return nil
			}
			if b, err := os.ReadFile(p); err == nil {
				out[p] = strings.TrimSpace(string(b))
			}
			return nil
		})
	}
	return out
}

// guardHostSysctls fails the test, at cleanup, if any host-wide kernel setting changed
// since it was called. Register it before the lab's own cleanup (cleanups run last
// registered first), so it checks after down.
func guardHostSysctls(t *testing.T) {
	t.Helper()
	before := hostSysctls(t)
	t.Cleanup(func() {
		after := hostSysctls(t)
		var changed []string
		for k, v := range before {
			if after[k] != v {
				changed = append(changed, k+": "+v+" -> "+after[k])
			}
		}
		sort.Strings(changed)
		assert.Empty(t, changed, "the lab changed host-wide kernel settings")
	})
}

// requireBuilt skips locally (fails in CI) when make has not built these under bin/.
func requireBuilt(t *testing.T, o Options, paths ...string) {
	t.Helper()
	for _, p := range paths {
		if _, err := os.Stat(filepath.Join(o.BinDir, p)); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("bin/%s is missing: make test builds it first", p)
			}
			t.Skipf("bin/%s missing (make k8s cilium)", p)
		}
	}
}

// checkNodes: the offline "upstream" distribution, on a lab brought up without a CNI:
// every node registers under its planned GUA, a host-network pod runs on each, and the
// client reaches each node's data-plane address. (TestCiliumNativeRouting runs it
// before it adds Cilium to the same lab: one lab for both, a minute of make test less.)
func checkNodes(ctx context.Context, t *testing.T, o Options, l *lab.Lab) {
	c, err := Client(o.Kubeconfig(l.Plan.Lab))
	require.NoError(t, err)
	states, err := nodeStates(ctx, c)
	require.NoError(t, err)
	for _, n := range l.Plan.KubeNodes {
		require.Contains(t, states, n.Name)
		assert.Equal(t, n.Address.String(), states[n.Name].InternalIP, "node %s registered under its planned GUA", n.Name)
	}

	refs, err := images.Refs(fixtures.Images)
	require.NoError(t, err)
	labels := map[string]string{"app": "hostnet-probe"}
	ds := &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Name: "hostnet-probe", Namespace: "default"},
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					HostNetwork: true,
					// No CNI yet: nodes are NotReady, which a host-network pod tolerates.
					Tolerations: []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
					Containers: []corev1.Container{{
						Name: "probe", Image: refs["host"], ImagePullPolicy: corev1.PullNever,
						Command: []string{"v6lab-probe", "serve", "--udp", ":9100", "--http", ""},
					}},
				},
			},
		},
	}
	_, err = c.AppsV1().DaemonSets("default").Create(ctx, ds, metav1.CreateOptions{})
	require.NoError(t, err)
	deadline := time.Now().Add(3 * time.Minute)
	running := map[string]string{}
	for len(running) < len(l.Plan.KubeNodes) && time.Now().Before(deadline) {
		pods, err := c.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "app=hostnet-probe"})
		require.NoError(t, err)
		for _, p := range pods.Items {
			if p.Status.Phase == corev1.PodRunning {
				running[p.Spec.NodeName] = p.Status.PodIP
			}
		}
		time.Sleep(2 * time.Second)
	}
	for _, n := range l.Plan.KubeNodes {
		assert.Equal(t, n.Address.String(), running[n.Name], "a host-network pod runs on %s with the node's address", n.Name)
		// The pod answers on the node's data-plane address, across the fabric.
		out, err := dockerExec(t, l.Plan.ContainerName("client"), "v6lab-probe", "send",
			"--to", "["+n.Address.String()+"]:9100", "--count", "5", "--interval", "20ms", "--wait", "500ms")
		assert.NoError(t, err, out)
		assert.Contains(t, out, `"received":5`, "client -> %s host-network pod", n.Name)
	}
	memory, _ := docker(ctx, 20*time.Second, "stats", "--no-stream", "--format", "{{.Name}} {{.MemUsage}}")
	t.Logf("memory of the running cluster (no CNI):\n%s", memory)
	require.NoError(t, c.AppsV1().DaemonSets("default").Delete(ctx, "hostnet-probe", metav1.DeleteOptions{}))
}
