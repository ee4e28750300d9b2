package runtime

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"v6lab.dev/v6lab/labs/plan"
	"v6lab.dev/v6lab/labs/xexec"
)

// ObserveIO is where `v6lab observe` connects the hubble CLI.
type ObserveIO struct {
	In       io.Reader
	Out, Err io.Writer
	TTY      bool // a terminal is attached: kubectl exec -t (colours, Ctrl-C)
}

// Observe runs the hubble CLI (`hubble <args>`) against the lab's hubble-relay: the
// CLI of the agent image, in a running Cilium agent's container (the server node's
// where it has one), pointed at the relay's Service address, which the agent's node
// reaches through Cilium's socket load balancer. It ends when the CLI does, or after
// timeout (the whole kubectl exec process group is killed).
func Observe(ctx context.Context, p *plan.Plan, kubeconfig string, args []string, timeout time.Duration, io ObserveIO) error {
	if _, err := os.Stat(kubeconfig); err != nil {
		return fmt.Errorf("lab %s is not up with Kubernetes (no kubeconfig at %s): v6lab up first", p.Lab, kubeconfig)
	}
	c, err := Client(kubeconfig)
	if err != nil {
		return err
	}
	svc, err := c.CoreV1().Services("kube-system").Get(ctx, "hubble-relay", metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("lab %s: no hubble-relay Service (is the lab up with Cilium, and Hubble's relay enabled?): %w", p.Lab, err)
	}
	addr, err := netip.ParseAddr(svc.Spec.ClusterIP)
	if err != nil || len(svc.Spec.Ports) == 0 {
		return fmt.Errorf("lab %s: the hubble-relay Service has no address or port (%q)", p.Lab, svc.Spec.ClusterIP)
	}
	server := netip.AddrPortFrom(addr, uint16(svc.Spec.Ports[0].Port))
	agent, err := observeAgent(ctx, c.CoreV1().Pods("kube-system"), p)
	if err != nil {
		return err
	}
	kargs := []string{"--kubeconfig", kubeconfig, "-n", "kube-system", "exec", "-i"}
	if io.TTY {
		kargs = append(kargs, "-t")
	}
	kargs = append(kargs, agent, "-c", "cilium-agent", "--", "hubble")
	kargs = append(append(kargs, args...), "--server", server.String())
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := xexec.Command(ctx, kubectl(), kargs...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = io.In, io.Out, io.Err
	if err := cmd.Run(); err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return fmt.Errorf("hubble %v: stopped after %s (--timeout)", args, timeout)
		}
		return fmt.Errorf("hubble %v: %w", args, err)
	}
	return nil
}

// observeAgent is a running, ready Cilium agent pod: the server node's first.
func observeAgent(ctx context.Context, pods interface {
	List(context.Context, metav1.ListOptions) (*corev1.PodList, error)
}, p *plan.Plan) (string, error) {
	list, err := pods.List(ctx, metav1.ListOptions{LabelSelector: "k8s-app=cilium"})
	if err != nil {
		return "", err
	}
	server := ""
	if s := p.Server(); s != nil {
		server = s.Name
	}
	best := ""
	for _, a := range list.Items {
		if a.Status.Phase != corev1.PodRunning || a.DeletionTimestamp != nil || !podReady(&a) {
			continue
		}
		if best == "" || a.Spec.NodeName == server {
			best = a.Name
		}
	}
	if best == "" {
		return "", fmt.Errorf("lab %s: no Cilium agent is running and ready", p.Lab)
	}
	return best, nil
}
