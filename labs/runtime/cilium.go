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

	"v6lab.dev/v6lab/labs/images"
	"v6lab.dev/v6lab/labs/plan"
	"v6lab.dev/v6lab/labs/xexec"
)

// installCilium installs (or upgrades) Cilium's Helm chart — the chart of the Cilium
// version the images were built from, staged by make cilium — with the rendered values,
// then applies the lab's namespaces and Cilium objects. Cilium's operator registers the
// CRDs, so the objects are applied once their CRDs exist.
func installCilium(ctx context.Context, dir, kubeconfig, chartDir string, log *slog.Logger) error {
	if err := helmInstall(ctx, kubeconfig, "cilium", "kube-system", chartDir, filepath.Join(dir, "cilium", "values.yaml"), log); err != nil {
		return err
	}
	return applyFiles(ctx, kubeconfig, 5*time.Minute, filepath.Join(dir, "kubernetes/namespaces.yaml"), filepath.Join(dir, "cilium/objects.yaml"))
}

// helmInstall installs a release of a chart directory with a values file, or upgrades
// it when it exists (Helm Go SDK).
func helmInstall(ctx context.Context, kubeconfig, release, namespace, chartDir, valuesFile string, log *slog.Logger) error {
	ch, err := loader.Load(chartDir)
	if err != nil {
		return fmt.Errorf("loading the %s chart from %s: %w", release, chartDir, err)
	}
	data, err := os.ReadFile(valuesFile)
	if err != nil {
		return err
	}
	values := map[string]any{}
	if err := yaml.Unmarshal(data, &values); err != nil {
		return fmt.Errorf("%s values: %w", release, err)
	}
	cfg, err := helmConfig(kubeconfig, namespace, log)
	if err != nil {
		return err
	}
	if _, err := action.NewGet(cfg).Run(release); err == nil {
		up := action.NewUpgrade(cfg)
		up.Namespace = namespace
		up.Timeout = 5 * time.Minute
		if _, err := up.RunWithContext(ctx, release, ch, values); err != nil {
			return fmt.Errorf("helm upgrade %s: %w", release, err)
		}
		return nil
	}
	in := action.NewInstall(cfg)
	in.ReleaseName, in.Namespace, in.CreateNamespace = release, namespace, true
	in.Timeout = 5 * time.Minute
	if _, err := in.RunWithContext(ctx, ch, values); err != nil {
		return fmt.Errorf("helm install %s: %w", release, err)
	}
	return nil
}

// helmConfig is the Helm SDK's configuration for one namespace of the lab's cluster
// (releases stored as Secrets, Helm's log at debug level).
func helmConfig(kubeconfig, namespace string, log *slog.Logger) (*action.Configuration, error) {
	settings := cli.New()
	settings.KubeConfig = kubeconfig
	cfg := new(action.Configuration)
	if err := cfg.Init(settings.RESTClientGetter(), namespace, "secret", func(format string, v ...any) {
		log.Debug(fmt.Sprintf(format, v...))
	}); err != nil {
		return nil, err
	}
	return cfg, nil
}

// helmUninstall removes a release (Helm Go SDK), waiting for its resources to go.
func helmUninstall(ctx context.Context, kubeconfig, release, namespace string, log *slog.Logger) error {
	cfg, err := helmConfig(kubeconfig, namespace, log)
	if err != nil {
		return err
	}
	un := action.NewUninstall(cfg)
	un.Wait, un.Timeout = true, 2*time.Minute
	if _, err := un.Run(release); err != nil {
		return fmt.Errorf("helm uninstall %s: %w", release, err)
	}
	return nil
}

// applyFiles applies manifests in order, retrying each until it applies: objects wait
// for their CRDs to be registered and for admission webhooks to serve.
func applyFiles(ctx context.Context, kubeconfig string, timeout time.Duration, files ...string) error {
	deadline := time.Now().Add(timeout)
	for _, f := range files {
		for {
			out, err := xexec.Run(ctx, xexec.Cmd{Name: kubectl(), Timeout: time.Minute,
				Args: []string{"--kubeconfig", kubeconfig, "apply", "-f", f}})
			if err == nil {
				break
			}
			if time.Now().After(deadline) || ctx.Err() != nil {
				return fmt.Errorf("applying %s: %w: %s", f, err, out)
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
			if err := xdpRefused(ctx, c, p.Spec.LinkMTU); err != nil { // it never will be: say why now
				return err
			}
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
		// Three reads of the API a second: the wait ends within a second of the
		// last agent's readiness (every 3 s cost up's cilium step 1.5 s on average).
		time.Sleep(time.Second)
	}
	return fmt.Errorf("Cilium not ready within %s: %s\n%s", timeout, why, ciliumDiagnosis(ctx, kubeconfig))
}

// ciliumDiagnosis is what a user needs when Cilium does not come up: the kube-system
// pods, and per agent its `cilium-dbg status` and the last lines of its log.
func ciliumDiagnosis(ctx context.Context, kubeconfig string) string {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer cancel()
	k := func(args ...string) string {
		out, err := xexec.Run(ctx, xexec.Cmd{Name: kubectl(), Timeout: 30 * time.Second,
			Args: append([]string{"--kubeconfig", kubeconfig, "-n", "kube-system"}, args...)})
		if err != nil && out == "" {
			return err.Error()
		}
		return out
	}
	var b strings.Builder
	b.WriteString(k("get", "pods", "-o", "wide"))
	names := strings.Fields(k("get", "pods", "-l", "k8s-app=cilium", "-o", "jsonpath={.items[*].metadata.name}"))
	for _, pod := range names {
		fmt.Fprintf(&b, "\n--- %s: cilium-dbg status\n", pod)
		b.WriteString(lastLines(k("exec", pod, "-c", "cilium-agent", "--", "cilium-dbg", "status"), 30))
		fmt.Fprintf(&b, "\n--- %s: last log lines\n", pod)
		b.WriteString(lastLines(k("logs", pod, "-c", "cilium-agent", "--tail", "15"), 15))
	}
	return b.String()
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// WaitReady waits until a running lab with Cilium is ready again: every agent and the
// operator ready, every node Ready, and every BGP session (fabric and nodes)
// Established. Suites call it after they restored a lab they broke on purpose.
func WaitReady(ctx context.Context, p *plan.Plan, kubeconfig string, timeout time.Duration) error {
	if err := waitCilium(ctx, p, kubeconfig, timeout); err != nil {
		return err
	}
	_, err := waitBGPWith(ctx, p, append(Members(p, false), SpeakerMembers(p)...), timeout)
	return err
}

// ciliumChart finds the Helm chart of a Cilium release: V6LAB_CILIUM_CHART when set (a
// chart directory or archive, e.g. one fetched from the official chart repository by a
// user who has it), else the chart make cilium staged from the release's Go module.
func ciliumChart(binDir, version string, build images.CiliumBuild, err error) (string, error) {
	if c := os.Getenv("V6LAB_CILIUM_CHART"); c != "" {
		return c, nil
	}
	if err != nil {
		return "", fmt.Errorf("no Helm chart for Cilium %s: %w (or set V6LAB_CILIUM_CHART to its chart)", version, err)
	}
	return findTool(binDir, filepath.FromSlash(build.Chart()))
}
