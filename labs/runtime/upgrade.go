package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"

	"v6lab.dev/v6lab/fixtures"
	"v6lab.dev/v6lab/labs/atomicfile"
	"v6lab.dev/v6lab/labs/ciliumbuild"
	"v6lab.dev/v6lab/labs/hostcompat"
	"v6lab.dev/v6lab/labs/images"
	"v6lab.dev/v6lab/labs/lab"
	"v6lab.dev/v6lab/labs/render"
	"v6lab.dev/v6lab/labs/spec"
	"v6lab.dev/v6lab/labs/xexec"
)

// UpgradeOptions say where an in-place Cilium upgrade goes.
type UpgradeOptions struct {
	// To is the Cilium release to move the running lab to (older than the running
	// one: a downgrade, done the same way).
	To string
	// AllowSkip lets the step cross more than one minor (Cilium supports one at a time).
	AllowSkip bool
	// Locked says the caller holds the lab's lock already (the suite, which runs the
	// upgrade inside its check).
	Locked bool
	// Timeout bounds the rollout (every agent and the operator Ready on the new
	// release, every BGP session Established); default 10m.
	Timeout time.Duration
}

// Restart is one Cilium pod replaced by the rollout, on the host's clock (the clock
// of the lab's captures): when the old pod was seen terminating, and when the new one
// was seen Ready.
type Restart struct {
	Component string    `json:"component"` // agent, operator
	Node      string    `json:"node"`
	OldPod    string    `json:"oldPod,omitempty"`
	NewPod    string    `json:"newPod,omitempty"`
	Stopping  time.Time `json:"stopping,omitzero"`
	Ready     time.Time `json:"ready,omitzero"`
}

// UpgradeResult is what one upgrade step did.
type UpgradeResult struct {
	From, To string
	// InstalledWith is the minor the cluster was installed with (upgradeCompatibility).
	InstalledWith string
	Direction     string // upgrade, downgrade
	Started       time.Time
	RolloutStart  time.Time // helm upgrade applied
	Ended         time.Time // agents, operator and BGP sessions ready on To
	Restarts      []Restart
}

// upgradeState is what a lab's directory keeps of its upgrades (upgrades.json): the
// release its cluster was installed with, and each step.
type upgradeState struct {
	InstalledWith string          `json:"installedWith"`
	Steps         []UpgradeResult `json:"steps"`
}

const upgradeStateFile = "upgrades.json"

// UpgradeStep says whether from -> to is one supported step: "upgrade", "downgrade",
// or an error with the reason (same release; a skipped minor unless allowSkip; a
// release v6lab does not support).
func UpgradeStep(from, to string, allowSkip bool) (string, error) {
	fm, tm := spec.CiliumMinor(from), spec.CiliumMinor(to)
	if !slices.Contains(spec.SupportedCiliumMinors, tm) {
		return "", fmt.Errorf("--cilium %q: not a Cilium release v6lab supports (%s)", to, strings.Join(spec.SupportedCiliumMinors, ", "))
	}
	if fm == "" {
		return "", fmt.Errorf("the lab runs Cilium %q, which v6lab cannot upgrade from", from)
	}
	if strings.TrimPrefix(from, "v") == strings.TrimPrefix(to, "v") {
		return "", fmt.Errorf("the lab already runs Cilium %s", from)
	}
	var fa, fb, ta, tb int
	fmt.Sscanf(fm, "%d.%d", &fa, &fb)
	fmt.Sscanf(tm, "%d.%d", &ta, &tb)
	dir := "upgrade"
	if ta < fa || (ta == fa && tb < fb) || (fm == tm && semverLess(to, from)) {
		dir = "downgrade"
	}
	if d := tb - fb; fa != ta || d > 1 || d < -1 {
		if !allowSkip {
			return "", fmt.Errorf("Cilium %s -> %s crosses more than one minor: Cilium supports upgrades and rollbacks between consecutive minors only (its upgrade guide); go through each minor in turn, or pass --allow-skip", from, to)
		}
	}
	return dir, nil
}

// semverLess orders two releases ("1.19.3", "v1.19.5").
func semverLess(a, b string) bool {
	return ciliumbuild.Less(ciliumbuild.Release(strings.TrimPrefix(a, "v")), ciliumbuild.Release(strings.TrimPrefix(b, "v")))
}

// Upgrade moves a running lab's Cilium to another release in place, as Cilium's upgrade
// guide says: the new images on every node, the pre-flight check (the new agent image
// running on every node, the lab's policies validated by the new release), the values
// rendered for the new release with upgradeCompatibility set to the minor the cluster
// was installed with, a Helm upgrade, and a wait for every agent and the operator to run
// the new release and be Ready, and every BGP session to be Established again. Each
// Cilium pod's replacement is marked on the host's clock.
func Upgrade(ctx context.Context, l *lab.Lab, o Options, uo UpgradeOptions) (UpgradeResult, error) {
	o.defaults()
	if uo.Timeout == 0 {
		uo.Timeout = 10 * time.Minute
	}
	from := l.Spec.Spec.Versions.Cilium
	res := UpgradeResult{From: from, To: strings.TrimPrefix(uo.To, "v"), Started: time.Now()}
	dir, err := UpgradeStep(from, uo.To, uo.AllowSkip)
	if err != nil {
		return res, err
	}
	res.Direction = dir
	if !uo.Locked {
		unlock, err := Lock(o, l.Plan.Lab, "upgrade")
		if err != nil {
			return res, err
		}
		defer unlock()
	}
	labDir := o.LabDir(l.Plan.Lab)
	kubeconfig := o.Kubeconfig(l.Plan.Lab)
	if running, err := runningMembers(ctx, l.Plan); err != nil {
		return res, err
	} else if len(running) == 0 {
		return res, fmt.Errorf("lab %s is not running: `v6lab up` it first", l.Plan.Lab)
	}
	state := upgradeState{InstalledWith: spec.CiliumMinor(from)}
	if data, err := os.ReadFile(filepath.Join(labDir, upgradeStateFile)); err == nil {
		if err := json.Unmarshal(data, &state); err != nil {
			return res, fmt.Errorf("%s: %w", upgradeStateFile, err)
		}
	}
	res.InstalledWith = state.InstalledWith
	build, err := images.CiliumFor(res.To)
	if err != nil {
		return res, err
	}
	// The release's chart: found once its build is there (the images step builds it).
	var chart string
	// The lab at the new release: only Cilium's values and the spec may differ.
	nl, err := l.WithCilium(res.To)
	if err != nil {
		return res, err
	}
	// Rendered as up renders: with this host's adaptations.
	rep, err := hostcompat.Detect()
	if err != nil {
		return res, err
	}
	o.Render.RuncWrapper = rep.Has(hostcompat.CapabilityFilter)
	files, err := render.All(nl, o.Render)
	if err != nil {
		return res, err
	}
	c, err := Client(kubeconfig)
	if err != nil {
		return res, err
	}
	pr := NewProgress(o.Out)
	steps := []upStep{
		{name: "images", run: func(ctx context.Context) (string, error) {
			msg, err := loadCiliumImages(ctx, l, o, labDir, build)
			if err != nil {
				return "", err
			}
			chart, err = ciliumChart(o.BinDir, res.To, build, nil)
			return msg, err
		}},
		{name: "pre-flight", run: func(ctx context.Context) (string, error) {
			return preflight(ctx, c, kubeconfig, chart, labDir, files, len(l.Plan.KubeNodes), o)
		}},
		{name: "render", run: func(ctx context.Context) (string, error) {
			return writeUpgradeFiles(labDir, files, state.InstalledWith)
		}},
		{name: "rollout", run: func(ctx context.Context) (string, error) {
			rs, started, err := rollout(ctx, c, l, kubeconfig, chart, filepath.Join(labDir, "cilium", "values.yaml"), build, uo.Timeout, o)
			res.Restarts, res.RolloutStart = rs, started
			if err != nil {
				return "", err
			}
			return fmt.Sprintf("%d agents and the operator replaced; Cilium %s ready; BGP sessions Established", len(rs)-1, res.To), nil
		}},
	}
	for _, s := range steps {
		if err := pr.Step(s.name, func() (string, error) { return s.run(ctx) }); err != nil {
			return res, err
		}
	}
	res.Ended = time.Now()
	state.Steps = append(state.Steps, res)
	data, err := json.MarshalIndent(state, "", "  ")
	if err != nil {
		return res, err
	}
	return res, atomicfile.Write(filepath.Join(labDir, upgradeStateFile), append(data, '\n'), 0o644)
}

// Reconfigure applies the running release's chart again with the lab's values and
// extra on top (nil: the lab's values alone, which undoes an earlier Reconfigure), and
// waits for the rollout as Upgrade does: a same-release "upgrade" with changed values.
func Reconfigure(ctx context.Context, l *lab.Lab, o Options, extra map[string]any) (UpgradeResult, error) {
	o.defaults()
	v := l.Spec.Spec.Versions.Cilium
	res := UpgradeResult{From: v, To: v, Direction: "reconfigure", Started: time.Now()}
	build, err := images.CiliumFor(v)
	if err != nil {
		return res, err
	}
	chart, err := ciliumChart(o.BinDir, v, build, nil)
	if err != nil {
		return res, err
	}
	labDir := o.LabDir(l.Plan.Lab)
	kubeconfig := o.Kubeconfig(l.Plan.Lab)
	valuesFile := filepath.Join(labDir, "cilium", "values.yaml")
	if extra != nil {
		data, err := os.ReadFile(valuesFile)
		if err != nil {
			return res, err
		}
		values := map[string]any{}
		if err := yaml.Unmarshal(data, &values); err != nil {
			return res, err
		}
		mergeValues(values, extra)
		if data, err = yaml.Marshal(values); err != nil {
			return res, err
		}
		valuesFile = filepath.Join(labDir, "cilium", "reconfigure-values.yaml")
		if err := atomicfile.Write(valuesFile, data, 0o644); err != nil {
			return res, err
		}
	}
	c, err := Client(kubeconfig)
	if err != nil {
		return res, err
	}
	res.Restarts, res.RolloutStart, err = rollout(ctx, c, l, kubeconfig, chart, valuesFile, build, 10*time.Minute, o)
	res.Ended = time.Now()
	return res, err
}

// mergeValues sets src's values into dst, maps merged key by key.
func mergeValues(dst, src map[string]any) {
	for k, v := range src {
		if sm, ok := v.(map[string]any); ok {
			if dm, ok := dst[k].(map[string]any); ok {
				mergeValues(dm, sm)
				continue
			}
		}
		dst[k] = v
	}
}

// loadCiliumImages builds the release's agent and operator images (offline) and
// imports them into every node's containerd from the lab's image directory.
func loadCiliumImages(ctx context.Context, l *lab.Lab, o Options, labDir string, build images.CiliumBuild) (string, error) {
	if o.Render.Source == images.Online {
		return "online: the nodes pull the public images", nil
	}
	if _, err := BuildCilium(ctx, o.BinDir, build, progressOut(o.Out)); err != nil {
		return "", err
	}
	b := images.Builder{FS: fixtures.Images, BinDir: o.BinDir, Log: o.Log}
	if _, err := b.Build(ctx, build.Images()...); err != nil {
		return "", err
	}
	refs, err := images.Refs(fixtures.Images, build)
	if err != nil {
		return "", err
	}
	load := []string{refs[build.Agent], refs[build.Operator]}
	if err := archiveImages(ctx, load, filepath.Join(CacheDir(), "archives"), filepath.Join(labDir, render.ImagesDir)); err != nil {
		return "", err
	}
	// Every node at once: each import is a node's own containerd reading the archive.
	errs := make([]error, len(l.Plan.KubeNodes))
	var wg sync.WaitGroup
	for i, n := range l.Plan.KubeNodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, ref := range load {
				if out, err := docker(ctx, 5*time.Minute, "exec", l.Plan.ContainerName(n.Name), "ctr", "--address", "/run/containerd/containerd.sock",
					"-n", "k8s.io", "images", "import", "/var/lib/v6lab/images/"+archiveName(ref)); err != nil {
					errs[i] = fmt.Errorf("importing %s on %s: %w: %s", ref, n.Name, err, out)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return "", err
	}
	return fmt.Sprintf("%s on %d nodes", strings.Join(load, ", "), len(l.Plan.KubeNodes)), nil
}

// preflight runs the guide's pre-flight check from the new release's chart (release
// cilium-preflight): a DaemonSet of the new agent image on every node, and the
// Deployment that validates the cluster's CiliumNetworkPolicies with the new release;
// both Ready, then removed.
func preflight(ctx context.Context, c *kubernetes.Clientset, kubeconfig, chart, labDir string, files render.Files, nodes int, o Options) (string, error) {
	values := map[string]any{}
	for _, f := range files {
		if f.Path == "cilium/values.yaml" {
			if err := yaml.Unmarshal(f.Data, &values); err != nil {
				return "", err
			}
		}
	}
	agent, _ := values["image"].(map[string]any)
	pre := map[string]any{
		"preflight":            map[string]any{"enabled": true, "image": agent},
		"agent":                false,
		"operator":             map[string]any{"enabled": false},
		"k8sServiceHost":       values["k8sServiceHost"],
		"k8sServicePort":       values["k8sServicePort"],
		"envoy":                values["envoy"],
		"l7Proxy":              values["l7Proxy"],
		"ipv4":                 values["ipv4"],
		"ipv6":                 values["ipv6"],
		"cgroup":               values["cgroup"],
		"kubeProxyReplacement": values["kubeProxyReplacement"],
	}
	path := filepath.Join(labDir, "cilium", "preflight-values.yaml")
	data, err := yaml.Marshal(pre)
	if err != nil {
		return "", err
	}
	if err := atomicfile.Write(path, data, 0o644); err != nil {
		return "", err
	}
	start := time.Now()
	if err := helmInstall(ctx, kubeconfig, "cilium-preflight", "kube-system", chart, path, o.Log); err != nil {
		return "", err
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
		defer cancel()
		_ = helmUninstall(ctx, kubeconfig, "cilium-preflight", "kube-system", o.Log)
	}()
	deadline := time.Now().Add(5 * time.Minute)
	var why string
	for time.Now().Before(deadline) && ctx.Err() == nil {
		ds, err := c.AppsV1().DaemonSets("kube-system").Get(ctx, "cilium-pre-flight-check", metav1.GetOptions{})
		dep, err2 := c.AppsV1().Deployments("kube-system").Get(ctx, "cilium-pre-flight-check", metav1.GetOptions{})
		switch {
		case err != nil || err2 != nil:
			why = fmt.Sprint(errors.Join(err, err2))
		case ds.Status.NumberReady < int32(nodes):
			why = fmt.Sprintf("%d of %d pre-flight pods Ready", ds.Status.NumberReady, nodes)
		case dep.Status.ReadyReplicas < 1:
			why = "the policy validation (cilium-dbg preflight validate-cnp) is not Ready"
		default:
			return fmt.Sprintf("new agent image runs on %d nodes, policies valid (%s)", nodes, time.Since(start).Round(time.Second)), nil
		}
		time.Sleep(2 * time.Second)
	}
	return "", fmt.Errorf("pre-flight check not passed within 5m: %s\n%s", why, preflightDiagnosis(ctx, kubeconfig))
}

func preflightDiagnosis(ctx context.Context, kubeconfig string) string {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	out, _ := xexec.Run(ctx, xexec.Cmd{Name: kubectl(), Timeout: 30 * time.Second,
		Args: []string{"--kubeconfig", kubeconfig, "-n", "kube-system", "get", "pods", "-o", "wide"}})
	return out
}

// writeUpgradeFiles writes the new release's files into the lab directory: Cilium's
// values (with upgradeCompatibility) and the spec. Any other file that would change
// means the release changes more than Cilium: refused.
func writeUpgradeFiles(labDir string, files render.Files, installedWith string) (string, error) {
	var changed []string
	for _, f := range files {
		have, err := os.ReadFile(filepath.Join(labDir, filepath.FromSlash(f.Path)))
		if err == nil && string(have) == string(f.Data) {
			continue
		}
		switch f.Path {
		case "cilium/values.yaml", "spec.yaml":
		default:
			return "", fmt.Errorf("the new release changes %s, not only Cilium's values: not an in-place upgrade (v6lab down and up the lab at the new release)", f.Path)
		}
		changed = append(changed, f.Path)
	}
	for _, f := range files {
		data := f.Data
		switch f.Path {
		case "cilium/values.yaml":
			// The guide: keep the configuration the cluster was installed with where
			// the new release's defaults changed.
			data = append(append([]byte{}, data...), fmt.Sprintf(
				"# Set by v6lab upgrade: the cluster was installed with Cilium %s.\nupgradeCompatibility: %q\n", installedWith, installedWith)...)
		case "spec.yaml":
		default:
			continue
		}
		if err := atomicfile.Write(filepath.Join(labDir, filepath.FromSlash(f.Path)), data, 0o644); err != nil {
			return "", err
		}
	}
	sort.Strings(changed)
	return fmt.Sprintf("%s (upgradeCompatibility %s)", strings.Join(changed, ", "), installedWith), nil
}

// rollout applies the new release with Helm and waits for it: the agent DaemonSet and
// the operator Deployment rolled out on the new images, every agent and the operator
// Ready, every node Ready and every BGP session Established. A watch on the Cilium
// pods marks each replacement.
func rollout(ctx context.Context, c *kubernetes.Clientset, l *lab.Lab, kubeconfig, chart, valuesFile string, build images.CiliumBuild, timeout time.Duration, o Options) ([]Restart, time.Time, error) {
	wctx, stop := context.WithCancel(ctx)
	marks := newRestartMarks()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); marks.watch(wctx, c) }()
	finish := func() []Restart { stop(); wg.Wait(); return marks.list() }

	started := time.Now()
	if err := helmInstall(ctx, kubeconfig, "cilium", "kube-system", chart, valuesFile, o.Log); err != nil {
		return finish(), started, err
	}
	deadline := time.Now().Add(timeout)
	var why string
	for {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return finish(), started, fmt.Errorf("Cilium %s not rolled out within %s: %s\n%s", build.Version, timeout, why, ciliumDiagnosis(ctx, kubeconfig))
		}
		ds, err := c.AppsV1().DaemonSets("kube-system").Get(ctx, "cilium", metav1.GetOptions{})
		op, err2 := c.AppsV1().Deployments("kube-system").Get(ctx, "cilium-operator", metav1.GetOptions{})
		if err != nil || err2 != nil {
			why = fmt.Sprint(errors.Join(err, err2))
		} else if why = rolledOut(ds, op); why == "" {
			break
		}
		time.Sleep(time.Second)
	}
	if err := WaitReady(ctx, l.Plan, kubeconfig, time.Until(deadline)); err != nil {
		return finish(), started, err
	}
	return finish(), started, nil
}

// rolledOut says what is not yet rolled out ("" when both are).
func rolledOut(ds *appsv1.DaemonSet, op *appsv1.Deployment) string {
	d := ds.Status
	switch {
	case d.ObservedGeneration < ds.Generation:
		return "the agent DaemonSet's new generation is not observed yet"
	case d.UpdatedNumberScheduled < d.DesiredNumberScheduled:
		return fmt.Sprintf("%d of %d agents on the new release", d.UpdatedNumberScheduled, d.DesiredNumberScheduled)
	case d.NumberReady < d.DesiredNumberScheduled || d.NumberUnavailable > 0:
		return fmt.Sprintf("%d of %d agents Ready", d.NumberReady, d.DesiredNumberScheduled)
	}
	s := op.Status
	want := int32(1)
	if op.Spec.Replicas != nil {
		want = *op.Spec.Replicas
	}
	switch {
	case s.ObservedGeneration < op.Generation:
		return "the operator's new generation is not observed yet"
	case s.UpdatedReplicas < want || s.Replicas > want:
		return "the operator is rolling out"
	case s.ReadyReplicas < want:
		return "the operator is not Ready"
	}
	return ""
}

// restartMarks records, from a watch of kube-system's Cilium pods, when each old pod
// began terminating and when each new one became Ready (the time the event arrived).
type restartMarks struct {
	mu   sync.Mutex
	seen map[string]bool // pods that existed when the watch began
	byID map[string]*Restart
	keys []string
}

func newRestartMarks() *restartMarks {
	return &restartMarks{seen: map[string]bool{}, byID: map[string]*Restart{}}
}

func ciliumComponent(p *corev1.Pod) string {
	switch {
	case p.Labels["k8s-app"] == "cilium":
		return "agent"
	case p.Labels["io.cilium/app"] == "operator":
		return "operator"
	}
	return ""
}

func (m *restartMarks) watch(ctx context.Context, c *kubernetes.Clientset) {
	first := true
	for ctx.Err() == nil {
		pods, err := c.CoreV1().Pods("kube-system").List(ctx, metav1.ListOptions{})
		if err != nil {
			time.Sleep(200 * time.Millisecond)
			continue
		}
		now := time.Now()
		for i := range pods.Items {
			p := &pods.Items[i]
			if first {
				if ciliumComponent(p) != "" {
					m.mu.Lock()
					m.seen[p.Name] = true
					m.mu.Unlock()
				}
			} else {
				// Back after a broken watch (an agent's restart can cut the API
				// connection): the pods as they are now.
				m.observe(p, watch.Modified, now)
			}
		}
		first = false
		w, err := c.CoreV1().Pods("kube-system").Watch(ctx, metav1.ListOptions{ResourceVersion: pods.ResourceVersion})
		if err != nil {
			time.Sleep(200 * time.Millisecond)
			continue
		}
		for ev := range w.ResultChan() {
			if ev.Type == watch.Error {
				break
			}
			if p, ok := ev.Object.(*corev1.Pod); ok {
				m.observe(p, ev.Type, time.Now())
			}
		}
		w.Stop()
	}
}

// observe files one pod event: an old pod terminating starts its node's restart; a new
// pod Ready ends it. The operator is keyed by component only (it moves between nodes).
func (m *restartMarks) observe(p *corev1.Pod, t watch.EventType, at time.Time) {
	comp := ciliumComponent(p)
	if comp == "" {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if p.Spec.NodeName == "" {
		return // not scheduled yet
	}
	key := comp + "/" + p.Spec.NodeName
	if comp == "operator" {
		key = comp
	}
	r := m.byID[key]
	if r == nil {
		r = &Restart{Component: comp}
		m.byID[key] = r
		m.keys = append(m.keys, key)
	}
	if m.seen[p.Name] {
		if (p.DeletionTimestamp != nil || t == watch.Deleted) && r.Stopping.IsZero() {
			r.OldPod, r.Stopping = p.Name, at
			if r.Node == "" {
				r.Node = p.Spec.NodeName
			}
		}
		return
	}
	r.NewPod, r.Node = p.Name, p.Spec.NodeName
	if podReady(p) && r.Ready.IsZero() {
		r.Ready = at
	}
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func (m *restartMarks) list() []Restart {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Restart
	for _, k := range m.keys {
		if r := m.byID[k]; r.NewPod != "" || !r.Stopping.IsZero() {
			out = append(out, *r)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Component != out[j].Component {
			return out[i].Component < out[j].Component
		}
		return out[i].Node < out[j].Node
	})
	return out
}
