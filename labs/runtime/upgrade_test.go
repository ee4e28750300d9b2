package runtime

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
)

func TestUpgradeStep(t *testing.T) {
	for _, c := range []struct {
		from, to string
		skip     bool
		want     string
		err      string
	}{
		{"1.18.4", "1.19.3", false, "upgrade", ""},
		{"1.19.3", "1.20.2", false, "upgrade", ""},
		{"1.20.2", "1.19.3", false, "downgrade", ""},
		{"1.20.1", "v1.20.2", false, "upgrade", ""},
		{"1.20.2", "1.20.1", false, "downgrade", ""},
		{"1.18.4", "1.20.2", false, "", "more than one minor"},
		{"1.20.2", "1.18.4", false, "", "more than one minor"},
		{"1.18.4", "1.20.2", true, "upgrade", ""},
		{"1.20.2", "1.20.2", false, "", "already runs"},
		{"1.20.2", "1.17.0", true, "", "not a Cilium release v6lab supports"},
		{"1.20.2", "latest", false, "", "not a Cilium release"},
	} {
		got, err := UpgradeStep(c.from, c.to, c.skip)
		if c.err != "" {
			assert.ErrorContains(t, err, c.err, "%s -> %s", c.from, c.to)
			continue
		}
		require.NoError(t, err, "%s -> %s", c.from, c.to)
		assert.Equal(t, c.want, got, "%s -> %s", c.from, c.to)
	}
}

func pod(name, node, app string, ready bool) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"k8s-app": app}}, Spec: corev1.PodSpec{NodeName: node}}
	st := corev1.ConditionFalse
	if ready {
		st = corev1.ConditionTrue
	}
	p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: st}}
	return p
}

func TestRestartMarks(t *testing.T) {
	m := newRestartMarks()
	m.seen["cilium-old1"] = true
	t0 := time.Unix(100, 0)
	old := pod("cilium-old1", "agent1", "cilium", true)
	now := metav1.NewTime(t0)
	old.DeletionTimestamp = &now
	m.observe(old, watch.Modified, t0)
	m.observe(old, watch.Deleted, t0.Add(time.Second))                                             // the first sign counts
	m.observe(pod("cilium-new1", "", "cilium", false), watch.Added, t0.Add(1100*time.Millisecond)) // not scheduled yet
	m.observe(pod("cilium-new1", "agent1", "cilium", false), watch.Modified, t0.Add(1200*time.Millisecond))
	m.observe(pod("cilium-new1", "agent1", "cilium", true), watch.Modified, t0.Add(4*time.Second))
	m.observe(pod("cilium-new1", "agent1", "cilium", true), watch.Modified, t0.Add(9*time.Second))
	m.observe(pod("coredns-x", "agent1", "kube-dns", true), watch.Modified, t0) // not Cilium's
	got := m.list()
	require.Len(t, got, 1)
	assert.Equal(t, Restart{Component: "agent", Node: "agent1", OldPod: "cilium-old1", NewPod: "cilium-new1",
		Stopping: t0, Ready: t0.Add(4 * time.Second)}, got[0])
}

func TestRolledOut(t *testing.T) {
	one := int32(1)
	ds := &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Generation: 2}, Status: appsv1.DaemonSetStatus{
		ObservedGeneration: 2, DesiredNumberScheduled: 3, UpdatedNumberScheduled: 2, NumberReady: 3}}
	op := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Generation: 2}, Spec: appsv1.DeploymentSpec{Replicas: &one},
		Status: appsv1.DeploymentStatus{ObservedGeneration: 2, Replicas: 1, UpdatedReplicas: 1, ReadyReplicas: 1}}
	assert.Equal(t, "2 of 3 agents on the new release", rolledOut(ds, op))
	ds.Status.UpdatedNumberScheduled = 3
	ds.Status.NumberUnavailable = 1
	assert.Contains(t, rolledOut(ds, op), "agents Ready")
	ds.Status.NumberUnavailable = 0
	assert.Equal(t, "", rolledOut(ds, op))
	op.Status.Replicas = 2 // the old operator pod still there
	assert.Equal(t, "the operator is rolling out", rolledOut(ds, op))
	op.Status.Replicas = 1
	ds.Status.ObservedGeneration = 1
	assert.Contains(t, rolledOut(ds, op), "not observed")
}
