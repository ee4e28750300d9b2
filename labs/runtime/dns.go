package runtime

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"v6lab.dev/v6lab/labs/render"
)

// installCoreDNS applies the cluster DNS (render.CoreDNSPath) and waits until its
// Deployment's replicas are all ready, which CoreDNS's ready plugin says only once it
// has synced with the API.
func installCoreDNS(ctx context.Context, dir, kubeconfig string, timeout time.Duration) error {
	if err := applyFiles(ctx, kubeconfig, timeout, filepath.Join(dir, render.CoreDNSPath)); err != nil {
		return err
	}
	c, err := Client(kubeconfig)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(timeout)
	why := "not yet looked at"
	for time.Now().Before(deadline) && ctx.Err() == nil {
		d, err := c.AppsV1().Deployments("kube-system").Get(ctx, "coredns", metav1.GetOptions{})
		switch {
		case err != nil:
			why = err.Error()
		case d.Spec.Replicas != nil && d.Status.ReadyReplicas >= *d.Spec.Replicas && d.Status.UpdatedReplicas >= *d.Spec.Replicas:
			return nil
		default:
			why = fmt.Sprintf("%d of %d CoreDNS replicas ready", d.Status.ReadyReplicas, *d.Spec.Replicas)
		}
		select {
		case <-ctx.Done():
		case <-time.After(2 * time.Second):
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return fmt.Errorf("cluster DNS not ready after %s: %s", timeout, why)
}
