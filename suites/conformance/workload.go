package conformance

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"sort"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

// The suite's workload: echo pods (v6lab-probe serve) of every application, the DSR
// backend, their Services; deployed once, shared by the checks.

// Workload names.
const (
	EchoName = "echo"          // every application: one echo pod per node, a LoadBalancer Service
	DSRName  = "dsr-echo"      // first application: one backend pinned to one node
	DSRSvc   = "dsr"           // its Service in the lab's LB mode
	SNATSvc  = "dsr-snat"      // the same backend, SNAT forwarding (the DSR check's control)
	LocalSvc = "dsr-local"     // the same backend, externalTrafficPolicy Local
	Headless = "echo-headless" // every application: its echo pods behind a headless Service (DNS answers the pods)
	Affinity = "echo-affinity" // first application: its echo pods behind a LoadBalancer Service with ClientIP affinity
	// RandomSvc: first application, its echo pods behind a LoadBalancer Service whose
	// backends are picked at random (service.cilium.io/lb-algorithm), the control of
	// maglev-consistency.
	RandomSvc = "echo-random"
	// RemovalName: first application, one echo pod per node with a readiness probe
	// (GET /ready on healthPort), behind RemovalSvc (backend-removal).
	RemovalName = "removal-echo"
	RemovalSvc  = "removal"
	// RemovalLocal: the same pods behind a Service with externalTrafficPolicy Local
	// (etp-local-withdrawal).
	RemovalLocal = "removal-local"
)

// Pod is a running pod of the suite's workload.
type Pod struct {
	Name, Namespace, Node string
	IP                    netip.Addr
}

func labels(app string) map[string]string { return map[string]string{"app": app} }

func (x *Lab) echoDeployment(ns, name string, replicas int32, node string) *appsv1.Deployment {
	spec := corev1.PodSpec{
		Containers: []corev1.Container{{Name: "echo", Image: x.HostImage, ImagePullPolicy: corev1.PullIfNotPresent,
			Command: []string{"v6lab-probe", "serve", "--udp", fmt.Sprintf(":%d", ProbePort), "--http", fmt.Sprintf(":%d", podHTTP),
				"--tcp", fmt.Sprintf(":%d", TCPPort)}}},
		TerminationGracePeriodSeconds: ptr.To(int64(1)),
	}
	if node != "" {
		spec.NodeSelector = map[string]string{"kubernetes.io/hostname": node}
	} else {
		spec.TopologySpreadConstraints = []corev1.TopologySpreadConstraint{{MaxSkew: 1,
			TopologyKey: "kubernetes.io/hostname", WhenUnsatisfiable: corev1.DoNotSchedule,
			LabelSelector: &metav1.LabelSelector{MatchLabels: labels(name)}}}
	}
	if name == RemovalName {
		c := &spec.Containers[0]
		c.Command = append(c.Command, "--health", fmt.Sprintf(":%d", healthPort))
		c.ReadinessProbe = &corev1.Probe{
			ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/ready", Port: intstrPort(healthPort)}},
			PeriodSeconds: 1, FailureThreshold: 1, SuccessThreshold: 1, TimeoutSeconds: 1,
		}
	}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: labels(name)},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels(name)}, Spec: spec},
		},
	}
}

// LBService is a LoadBalancer Service for an app's pods; annotations may pick a mode.
func LBService(ns, name, app string, annotations map[string]string) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Annotations: annotations},
		Spec: corev1.ServiceSpec{
			Type:                  corev1.ServiceTypeLoadBalancer,
			IPFamilies:            []corev1.IPFamily{corev1.IPv6Protocol},
			Selector:              labels(app),
			ExternalTrafficPolicy: corev1.ServiceExternalTrafficPolicyCluster,
			Ports: []corev1.ServicePort{
				{Name: "udp", Port: ProbePort, Protocol: corev1.ProtocolUDP},
				{Name: "http", Port: HTTPPort, Protocol: corev1.ProtocolTCP, TargetPort: intstrPort(podHTTP)},
				{Name: "tcp", Port: TCPPort, Protocol: corev1.ProtocolTCP},
			},
		},
	}
}

// headlessService is a Service without a ClusterIP: the cluster DNS answers its name
// with the pods' own addresses.
func headlessService(ns, name, app string) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: corev1.ServiceSpec{
			ClusterIP:  corev1.ClusterIPNone,
			IPFamilies: []corev1.IPFamily{corev1.IPv6Protocol},
			Selector:   labels(app),
			Ports:      []corev1.ServicePort{{Name: "udp", Port: ProbePort, Protocol: corev1.ProtocolUDP}},
		},
	}
}

// affinityService keeps each client on one backend (sessionAffinity: ClientIP).
func affinityService(s *corev1.Service) *corev1.Service {
	s.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
	return s
}

func localService(s *corev1.Service) *corev1.Service {
	s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
	return s
}

// dsrBackend is the one pod behind the DSR, SNAT and Local Services (on DSRNode).
func (x *Lab) dsrBackend(ctx context.Context) (Pod, error) {
	ns := x.Plan.Apps[0].Namespace
	pods, err := x.Pods(ctx, ns, DSRName)
	if err != nil || len(pods) != 1 {
		return Pod{}, fmt.Errorf("%s: %d %s pods Ready, not one (%v)", ns, len(pods), DSRName, err)
	}
	return pods[0], nil
}

// DSRNode is the node that holds the DSR check's only backend: the last node, so that
// connections also enter through the others.
func (x *Lab) DSRNode() string { return x.Plan.KubeNodes[len(x.Plan.KubeNodes)-1].Name }

// Deploy creates the suite's workload (idempotent) and waits until its pods run, its
// Services have VIPs, every agent knows every pod and the routers route the VIPs.
func (x *Lab) Deploy(ctx context.Context) error {
	for _, app := range x.Plan.Apps {
		if err := x.apply(ctx, x.echoDeployment(app.Namespace, EchoName, int32(len(x.Plan.KubeNodes)), ""),
			LBService(app.Namespace, EchoName, EchoName, nil), headlessService(app.Namespace, Headless, EchoName)); err != nil {
			return err
		}
	}
	first := x.Plan.Apps[0].Namespace
	if err := x.apply(ctx, x.echoDeployment(first, DSRName, 1, x.DSRNode()),
		LBService(first, DSRSvc, DSRName, nil),
		LBService(first, SNATSvc, DSRName, map[string]string{"service.cilium.io/forwarding-mode": "snat"}),
		localService(LBService(first, LocalSvc, DSRName, nil))); err != nil {
		return err
	}
	if err := x.applyServices(ctx, affinityService(LBService(first, Affinity, EchoName, nil)),
		LBService(first, RandomSvc, EchoName, map[string]string{"service.cilium.io/lb-algorithm": "random"})); err != nil {
		return err
	}
	if err := x.apply(ctx, x.echoDeployment(first, RemovalName, int32(len(x.Plan.KubeNodes)), ""),
		LBService(first, RemovalSvc, RemovalName, nil), localService(LBService(first, RemovalLocal, RemovalName, nil))); err != nil {
		return err
	}
	deadline := time.Now().Add(5 * time.Minute)
	for {
		why := ""
		for _, app := range x.Plan.Apps {
			pods, err := x.Pods(ctx, app.Namespace, EchoName)
			if err != nil {
				return err
			}
			if len(pods) != len(x.Plan.KubeNodes) {
				why = fmt.Sprintf("%s: %d of %d echo pods running", app.Namespace, len(pods), len(x.Plan.KubeNodes))
			}
			if _, err := x.VIP(ctx, app.Namespace, EchoName); err != nil {
				why = err.Error()
			}
		}
		for _, svc := range []string{Affinity, RandomSvc, RemovalSvc, RemovalLocal} {
			if _, err := x.VIP(ctx, first, svc); err != nil {
				why = err.Error()
			}
		}
		if pods, err := x.Pods(ctx, first, RemovalName); err != nil || len(pods) != len(x.Plan.KubeNodes) {
			why = fmt.Sprintf("%d of %d %s pods ready (%v)", len(pods), len(x.Plan.KubeNodes), RemovalName, err)
		}
		if pods, err := x.Pods(ctx, first, DSRName); err != nil || len(pods) != 1 {
			why = fmt.Sprintf("the DSR backend is not running (%v)", err)
		}
		if why == "" {
			if err := x.WaitDatapath(ctx, time.Until(deadline)); err != nil {
				return err
			}
			x.waitRouted(ctx, min(time.Minute, time.Until(deadline)))
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("workload not ready after 5m: %s", why)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(2 * time.Second):
		}
	}
}

func (x *Lab) apply(ctx context.Context, d *appsv1.Deployment, svcs ...*corev1.Service) error {
	if _, err := x.Client.AppsV1().Deployments(d.Namespace).Create(ctx, d, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("deployment %s/%s: %w", d.Namespace, d.Name, err)
	}
	return x.applyServices(ctx, svcs...)
}

func (x *Lab) applyServices(ctx context.Context, svcs ...*corev1.Service) error {
	for _, s := range svcs {
		if _, err := x.Client.CoreV1().Services(s.Namespace).Create(ctx, s, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("service %s/%s: %w", s.Namespace, s.Name, err)
		}
	}
	return nil
}

// Pods lists the running pods (with an address) of an app label in a namespace.
func (x *Lab) Pods(ctx context.Context, ns, app string) ([]Pod, error) {
	list, err := x.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=" + app})
	if err != nil {
		return nil, err
	}
	var pods []Pod
	for _, p := range list.Items {
		ready := false
		for _, c := range p.Status.ContainerStatuses {
			ready = ready || c.Ready
		}
		ip, err := netip.ParseAddr(p.Status.PodIP)
		if p.Status.Phase != corev1.PodRunning || err != nil || !ready || p.DeletionTimestamp != nil {
			continue
		}
		pods = append(pods, Pod{Name: p.Name, Namespace: ns, Node: p.Spec.NodeName, IP: ip})
	}
	sort.Slice(pods, func(i, j int) bool { return pods[i].Node < pods[j].Node })
	return pods, nil
}

// VIP is a LoadBalancer Service's address.
func (x *Lab) VIP(ctx context.Context, ns, name string) (netip.Addr, error) {
	s, err := x.Client.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return netip.Addr{}, err
	}
	for _, i := range s.Status.LoadBalancer.Ingress {
		if a, err := netip.ParseAddr(i.IP); err == nil {
			return a, nil
		}
	}
	return netip.Addr{}, fmt.Errorf("service %s/%s has no VIP yet", ns, name)
}

// lbVIPs are the VIPs of every LoadBalancer Service in the applications' namespaces.
func (x *Lab) lbVIPs(ctx context.Context) ([]netip.Addr, error) {
	var out []netip.Addr
	for _, app := range x.Plan.Apps {
		svcs, err := x.Client.CoreV1().Services(app.Namespace).List(ctx, metav1.ListOptions{})
		if err != nil {
			return nil, err
		}
		for _, s := range svcs.Items {
			for _, i := range s.Status.LoadBalancer.Ingress {
				if a, err := netip.ParseAddr(i.IP); err == nil {
					out = append(out, a)
				}
			}
		}
	}
	return out, nil
}

// Cleanup removes everything the suite created in the cluster.
func (x *Lab) Cleanup(ctx context.Context) {
	for _, app := range x.Plan.Apps {
		_ = x.Client.AppsV1().Deployments(app.Namespace).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{})
		for _, n := range []string{EchoName, DSRSvc, SNATSvc, LocalSvc, Headless, Affinity, RandomSvc, RemovalSvc, RemovalLocal} {
			_ = x.Client.CoreV1().Services(app.Namespace).Delete(ctx, n, metav1.DeleteOptions{})
		}
	}
}

func intstrPort(p int) intstr.IntOrString { return intstr.FromInt32(int32(p)) }

// StartResponder starts the world host's UDP responder (idempotent: a second one fails
// to bind and exits).
func (x *Lab) StartResponder(ctx context.Context) error {
	world := x.Plan.HostByRole("world")
	_, err := run(ctx, "docker", []string{"exec", "-d", x.Plan.ContainerName(world.Name), "v6lab-probe", "serve", "--http", ""}, "")
	time.Sleep(300 * time.Millisecond)
	return err
}

// waitRouted waits, at most timeout, until the routers route the workload's VIPs
// through every node that announces them (bgp-routes' state, routesOnce): the checks
// that run first (Check.Concurrent) probe the VIPs at once, and on a lab just up a
// speaker still announcing them moved a connection mid-way (a CI run: MetalLB on one
// node went from 0 to 8 announced prefixes during the first group, and 1 of 30 HTTP
// requests went unanswered). A lab whose routes do not settle is left to bgp-routes to
// judge: the wait ends and says so.
func (x *Lab) waitRouted(ctx context.Context, timeout time.Duration) {
	start := time.Now()
	if r, err := untilPass(ctx, x, timeout, routesOnce); err != nil || !r.Pass {
		slog.Warn("the routers' routes toward the workload did not settle: bgp-routes will judge them", "waited", time.Since(start).Round(time.Millisecond), "why", r.Reason, "err", err)
		return
	}
	slog.Info("the routers route every VIP of the workload", "waited", time.Since(start).Round(time.Millisecond))
}
