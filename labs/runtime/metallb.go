package runtime

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"v6lab.dev/v6lab/labs/plan"
	"v6lab.dev/v6lab/labs/render/metallb"
	"v6lab.dev/v6lab/labs/spec"
	"v6lab.dev/v6lab/labs/xexec"
)

// usesMetalLB reports whether MetalLB announces the lab's VIPs (BGP or layer 2).
func usesMetalLB(p *plan.Plan) bool { return p.Spec.LoadBalancer.UsesMetalLB() }

// speakerMember names a node's MetalLB speaker among the members whose sessions a wait
// expects: the router peers with the node's speaker address.
func speakerMember(node string) string { return "speaker:" + node }

// SpeakerMembers are the BGP speakers of a MetalLB lab (none otherwise, nor in layer 2
// mode, where the speakers peer with no router).
func SpeakerMembers(p *plan.Plan) []string {
	if p.Spec.LoadBalancer.Announcer != spec.AnnouncerMetalLB {
		return nil
	}
	var out []string
	for _, n := range p.KubeNodes {
		out = append(out, speakerMember(n.Name))
	}
	return out
}

// installMetalLB installs MetalLB's chart (FRR mode) with the rendered values, waits for
// the controller and every speaker, then applies the lab's MetalLB objects (their
// admission webhook serves once the controller runs).
func installMetalLB(ctx context.Context, dir, kubeconfig, chartDir string, p *plan.Plan, timeout time.Duration, log *slog.Logger) error {
	if err := helmInstall(ctx, kubeconfig, "metallb", metallb.Namespace, chartDir, filepath.Join(dir, "metallb", "values.yaml"), log); err != nil {
		return err
	}
	c, err := Client(kubeconfig)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(timeout)
	why := ""
	for {
		ds, err := c.AppsV1().DaemonSets(metallb.Namespace).Get(ctx, "metallb-speaker", metav1.GetOptions{})
		dep, err2 := c.AppsV1().Deployments(metallb.Namespace).Get(ctx, "metallb-controller", metav1.GetOptions{})
		switch {
		case err != nil || err2 != nil:
			why = fmt.Sprint(err, err2)
		case ds.Status.NumberReady < int32(len(p.KubeNodes)):
			why = fmt.Sprintf("%d of %d speakers ready", ds.Status.NumberReady, len(p.KubeNodes))
		case dep.Status.ReadyReplicas < 1:
			why = "the controller is not ready"
		default:
			why = ""
		}
		if why == "" {
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			pods, _ := kubectlOut(ctx, kubeconfig, "-n", metallb.Namespace, "get", "pods", "-o", "wide")
			return fmt.Errorf("MetalLB not ready within %s: %s\n%s", timeout, why, pods)
		}
		time.Sleep(time.Second)
	}
	return applyFiles(ctx, kubeconfig, timeout, filepath.Join(dir, "metallb", "objects.yaml"))
}

func kubectlOut(ctx context.Context, kubeconfig string, args ...string) (string, error) {
	out, err := xexec.Run(ctx, xexec.Cmd{Name: kubectl(), Timeout: 30 * time.Second,
		Args: append([]string{"--kubeconfig", kubeconfig}, args...)})
	return strings.TrimSpace(out), err
}
