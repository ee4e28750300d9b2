package runtime

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"v6lab.dev/v6lab/fixtures"
	"v6lab.dev/v6lab/labs/images"
	"v6lab.dev/v6lab/labs/plan"
	"v6lab.dev/v6lab/labs/spec"
	"v6lab.dev/v6lab/labs/xexec"
)

// The lab's nodes first, without a CNI (checkNodes); then `up` again on the running lab
// adds Cilium, in native routing with multi-pool IPAM and its BGP control plane: every
// pod gets a GUA from its application's /64, pods reach each other across nodes and the
// world host with their own address (the world host echoes the source it saw), the
// routers learn the pod pools from the nodes, and nothing host-wide changes.
func TestCiliumNativeRouting(t *testing.T) {
	o := integration(t)
	o.UnderlayOnly = false
	o.NoCNI = true
	build, err := images.CiliumFor(spec.DefaultCiliumVersion)
	require.NoError(t, err)
	requireBuilt(t, o, "k8s/kubelet", build.Chart())
	guardHostSysctls(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	l := testLab(t, "itest-cilium")
	t.Cleanup(func() {
		assert.NoError(t, Down(context.Background(), l.Plan.Lab, o))
		assert.Empty(t, leftovers(context.Background(), l.Plan.Lab, planContainers(l.Plan)))
	})
	require.NoError(t, Up(ctx, l, o))
	checkNodes(ctx, t, o, l)
	if t.Failed() {
		return
	}
	o.NoCNI = false
	require.NoError(t, Up(ctx, l, o), "up again on the running lab adds Cilium")
	assert.Contains(t, o.Out.(*bytes.Buffer).String(), "already running", "the second up deploys nothing again")
	kc := o.Kubeconfig(l.Plan.Lab)

	// A readiness wait that times out says why: each agent's status and log.
	err = waitCilium(ctx, l.Plan, kc, 0)
	require.Error(t, err)
	assert.Contains(t, err.Error(), ": cilium-dbg status")
	assert.Contains(t, err.Error(), "KubeProxyReplacement", "cilium-dbg status output in the diagnosis")
	assert.Contains(t, err.Error(), ": last log lines")
	c, err := Client(kc)
	require.NoError(t, err)

	refs, err := images.Refs(fixtures.Images)
	require.NoError(t, err)
	for _, app := range l.Plan.Apps {
		labels := map[string]string{"app": "echo"}
		d := &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: "echo", Namespace: app.Namespace},
			Spec: appsv1.DeploymentSpec{
				Replicas: ptr.To(int32(len(l.Plan.KubeNodes))),
				Selector: &metav1.LabelSelector{MatchLabels: labels},
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: labels},
					Spec: corev1.PodSpec{
						TopologySpreadConstraints: []corev1.TopologySpreadConstraint{{MaxSkew: 1,
							TopologyKey: "kubernetes.io/hostname", WhenUnsatisfiable: corev1.DoNotSchedule,
							LabelSelector: &metav1.LabelSelector{MatchLabels: labels}}},
						Containers: []corev1.Container{{Name: "echo", Image: refs["host"], ImagePullPolicy: corev1.PullNever,
							Command: []string{"v6lab-probe", "serve", "--udp", ":9000", "--http", ":8080"}}},
					},
				},
			},
		}
		_, err := c.AppsV1().Deployments(app.Namespace).Create(ctx, d, metav1.CreateOptions{})
		require.NoError(t, err)
	}

	type pod struct{ name, ns, node, ip string }
	var pods []pod
	deadline := time.Now().Add(5 * time.Minute)
	for time.Now().Before(deadline) {
		pods = pods[:0]
		for _, app := range l.Plan.Apps {
			list, err := c.CoreV1().Pods(app.Namespace).List(ctx, metav1.ListOptions{LabelSelector: "app=echo"})
			require.NoError(t, err)
			for _, p := range list.Items {
				if p.Status.Phase == corev1.PodRunning && p.Status.PodIP != "" {
					pods = append(pods, pod{p.Name, p.Namespace, p.Spec.NodeName, p.Status.PodIP})
				}
			}
		}
		if len(pods) == len(l.Plan.Apps)*len(l.Plan.KubeNodes) {
			break
		}
		time.Sleep(3 * time.Second)
	}
	require.Len(t, pods, len(l.Plan.Apps)*len(l.Plan.KubeNodes), "every echo pod runs")

	pool := map[string]netip.Prefix{}
	for _, a := range l.Plan.Apps {
		pool[a.Namespace] = a.PodPool
	}
	for _, p := range pods {
		ip := netip.MustParseAddr(p.ip)
		assert.True(t, pool[p.ns].Contains(ip), "pod %s/%s has %s, inside its application's %s", p.ns, p.name, ip, pool[p.ns])
	}

	send := func(from pod, to netip.AddrPort) (received int, observed map[string]int) {
		out, err := xexec.Run(ctx, xexec.Cmd{Name: kubectl(), Timeout: time.Minute, Args: []string{"--kubeconfig", kc,
			"-n", from.ns, "exec", from.name, "--", "v6lab-probe", "send", "--to", to.String(), "--count", "20",
			"--interval", "10ms", "--wait", "500ms"}})
		require.NoError(t, err, out)
		var sum struct {
			Received int
			Observed map[string]int
		}
		require.NoError(t, json.Unmarshal([]byte(out[strings.Index(out, "{"):]), &sum), out)
		return sum.Received, sum.Observed
	}

	// Cross-node pod to pod, between applications.
	a := pods[0]
	var b pod
	for _, p := range pods {
		if p.ns != a.ns && p.node != a.node {
			b = p
			break
		}
	}
	require.NotEmpty(t, b.name, "a pod of another application on another node: %v", pods)
	got, _ := send(a, netip.AddrPortFrom(netip.MustParseAddr(b.ip), 9000))
	assert.Equal(t, 20, got, "%s on %s -> %s on %s", a.name, a.node, b.name, b.node)

	// Pod to world: the world host sees the pod's own GUA (no masquerade).
	world := l.Plan.HostByRole("world")
	_, err = dockerExec(t, l.Plan.ContainerName(world.Name), "sh", "-c", "v6lab-probe serve --http '' >/dev/null 2>&1 &")
	require.NoError(t, err)
	time.Sleep(500 * time.Millisecond)
	for _, p := range pods {
		got, observed := send(p, netip.AddrPortFrom(world.Address, 9000))
		assert.Equal(t, 20, got, "%s -> world", p.name)
		assert.Equal(t, map[string]int{p.ip: 20}, observed, "the world host saw %s's own address", p.name)
	}

	// The routers hold routes for every application's pod /64 (the nodes' slices).
	st, err := GetStatus(ctx, l.Plan)
	require.NoError(t, err)
	for _, a := range l.Plan.Apps {
		var slices []string
		for _, r := range st.Routes {
			pfx, err := netip.ParsePrefix(r.Prefix)
			if err == nil && r.Router == "edge1" && a.PodPool.Contains(pfx.Addr()) {
				slices = append(slices, r.Prefix)
			}
		}
		assert.Len(t, slices, len(l.Plan.KubeNodes), "edge1 learned one slice of %s per node: %v", a.PodPool, slices)
	}
	for _, s := range st.Sessions {
		assert.True(t, s.Established(), "session %s -> %s is %s", s.Router, s.Peer, s.State)
	}
	t.Log(fmt.Sprintf("pods: %v", pods))

	t.Run("an interrupted suite undoes its fault", func(t *testing.T) { interruptSuite(t, o, l.Plan) })
}

// interruptSuite runs `v6lab test --check failover` on the lab, sends it SIGINT once a
// router link toward a node is down (the failover check's first fault), and checks
// that the suite stopped and left no fault behind: every node link up, no v6lab nft
// table on any router, no node paused.
func interruptSuite(t *testing.T, o Options, p *plan.Plan) {
	cmd := exec.Command(filepath.Join(o.BinDir, "v6lab"), "test", p.Lab, "--check", "failover", "--state-dir", o.StateDir, "-o", t.TempDir())
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	require.NoError(t, cmd.Start())
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	operstate := func(router, iface string) string {
		s, _ := dockerExec(t, p.ContainerName(router), "cat", "/sys/class/net/"+iface+"/operstate")
		return strings.TrimSpace(s)
	}
	faulted := ""
	deadline := time.Now().Add(6 * time.Minute)
	for faulted == "" && time.Now().Before(deadline) {
		select {
		case err := <-done:
			t.Fatalf("the suite ended before its first fault (%v):\n%s", err, out.String())
		default:
		}
		for _, n := range p.KubeNodes {
			if operstate(n.Router, n.RouterIface) == "down" {
				faulted = n.Router + ":" + n.RouterIface
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	require.NotEmpty(t, faulted, "the failover check took a node link down:\n%s", out.String())
	// The suite's progress streams while it runs (no terminal here: each line has the
	// time of day): the workload's line is out before the first fault.
	assert.Regexp(t, `(?m)^\d\d:\d\d:\d\d  workload +ready \S+  echo pods`, out.String(), "streamed before the check ended")
	assert.NotContains(t, out.String(), "--- PASS", "the test log stays in suite.log")
	require.NoError(t, cmd.Process.Signal(os.Interrupt))
	select {
	case err := <-done:
		assert.Error(t, err, "an interrupted suite does not pass")
	case <-time.After(6 * time.Minute):
		_ = cmd.Process.Kill()
		t.Fatalf("the suite did not stop within 6 minutes of SIGINT:\n%s", out.String())
	}
	for _, n := range p.KubeNodes {
		assert.Equal(t, "up", operstate(n.Router, n.RouterIface), "%s:%s is up again (was %s down)", n.Router, n.RouterIface, faulted)
	}
	for _, r := range p.Routers {
		tables, err := dockerExec(t, p.ContainerName(r.Name), "nft", "list", "tables")
		require.NoError(t, err, tables)
		assert.NotContains(t, tables, "v6lab_", "%s keeps no fault table", r.Name)
	}
	for _, n := range p.KubeNodes {
		state, err := xexec.Run(context.Background(), xexec.Cmd{Name: "docker", Args: []string{"inspect", "-f", "{{.State.Paused}}", p.ContainerName(n.Name)}})
		require.NoError(t, err)
		assert.Equal(t, "false", strings.TrimSpace(state), "%s is not left paused", n.Name)
	}
	t.Logf("interrupted during the fault on %s; the suite said:\n%s", faulted, out.String())
}
