package runtime

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/cli"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"v6lab.dev/v6lab/labs/plan"
	"v6lab.dev/v6lab/labs/xexec"
)

// installCilium installs (or upgrades) Cilium's Helm chart — the chart of the Cilium
// version the images were built from, staged by make cilium — with the rendered values,
// then applies the lab's namespaces and Cilium objects. Cilium's operator registers the
// CRDs, so the objects are applied once their CRDs exist.
func installCilium(ctx context.Context, dir, kubeconfig, chartDir string, log *slog.Logger) error {
	ch, err := loader.Load(chartDir)
	if err != nil {
		return fmt.Errorf("loading the Cilium chart from %s (make cilium): %w", chartDir, err)
	}
	data, err := os.ReadFile(filepath.Join(dir, "cilium", "values.yaml"))
	if err != nil {
		return err
	}
	values := map[string]any{}
	if err := yaml.Unmarshal(data, &values); err != nil {
		return fmt.Errorf("cilium values: %w", err)
	}
	settings := cli.New()
	settings.KubeConfig = kubeconfig
	cfg := new(action.Configuration)
	if err := cfg.Init(settings.RESTClientGetter(), "kube-system", "secret", func(format string, v ...any) {
		log.Debug(fmt.Sprintf(format, v...))
	}); err != nil {
		return err
	}
	if _, err := action.NewGet(cfg).Run("cilium"); err == nil {
		up := action.NewUpgrade(cfg)
		up.Namespace = "kube-system"
		up.Timeout = 5 * time.Minute
		if _, err := up.RunWithContext(ctx, "cilium", ch, values); err != nil {
			return fmt.Errorf("helm upgrade cilium: %w", err)
		}
	} else {
		in := action.NewInstall(cfg)
		in.ReleaseName, in.Namespace = "cilium", "kube-system"
		in.Timeout = 5 * time.Minute
		if _, err := in.RunWithContext(ctx, ch, values); err != nil {
			return fmt.Errorf("helm install cilium: %w", err)
		}
	}
	// The namespaces and the Cilium objects (pools, BGP), once the operator has
	// registered the CRDs.
	deadline := time.Now().Add(5 * time.Minute)
	for _, f := range []string{"kubernetes/namespaces.yaml", "cilium/objects.yaml"} {
		for {
			_, err := xexec.Run(ctx, xexec.Cmd{Name: kubectl(), Timeout: time.Minute,
				Args: []string{"--kubeconfig", kubeconfig, "apply", "-f", filepath.Join(dir, f)}})
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("applying %s: %w", f, err)
			}
			time.Sleep(3 * time.Second)
		}
	}
	return nil
}

// kubectl is the kubectl built by make k8s, next to v6lab, or the one in PATH.
func kubectl() string {
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), "k8s", "kubectl")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return "kubectl"
}

// waitCilium waits until every Cilium agent and the operator are ready and every node
// is Ready; on timeout it shows what is not.
func waitCilium(ctx context.Context, p *plan.Plan, kubeconfig string, timeout time.Duration) error {
	c, err := Client(kubeconfig)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(timeout)
	var why string
	for time.Now().Before(deadline) && ctx.Err() == nil {
		ds, err := c.AppsV1().DaemonSets("kube-system").Get(ctx, "cilium", metav1.GetOptions{})
		op, err2 := c.AppsV1().Deployments("kube-system").Get(ctx, "cilium-operator", metav1.GetOptions{})
		states, err3 := nodeStates(ctx, c)
		switch {
		case err != nil || err2 != nil || err3 != nil:
			why = fmt.Sprint(err, err2, err3)
		case ds.Status.NumberReady < int32(len(p.KubeNodes)):
			why = fmt.Sprintf("%d of %d Cilium agents ready", ds.Status.NumberReady, len(p.KubeNodes))
		case op.Status.ReadyReplicas < 1:
			why = "the operator is not ready"
		default:
			var notReady []string
			for _, n := range p.KubeNodes {
				if !states[n.Name].Ready {
					notReady = append(notReady, n.Name)
				}
			}
			if len(notReady) == 0 {
				return nil
			}
			why = "nodes not Ready: " + strings.Join(notReady, ", ")
		}
		time.Sleep(3 * time.Second)
	}
	pods, _ := xexec.Run(ctx, xexec.Cmd{Name: kubectl(), Timeout: 20 * time.Second,
		Args: []string{"--kubeconfig", kubeconfig, "-n", "kube-system", "get", "pods", "-o", "wide"}})
	return fmt.Errorf("Cilium not ready within %s: %s\n%s", timeout, why, pods)
}

// WaitReady waits until a running lab with Cilium is ready again: every agent and the
// operator ready, every node Ready, and every BGP session (fabric and nodes)
// Established. Suites call it after they restored a lab they broke on purpose.
func WaitReady(ctx context.Context, p *plan.Plan, kubeconfig string, timeout time.Duration) error {
	if err := waitCilium(ctx, p, kubeconfig, timeout); err != nil {
		return err
	}
	_, err := waitBGPWith(ctx, p, Members(p, false), timeout)
	return err
}
