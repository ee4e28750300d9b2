package lab

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"v6lab.dev/v6lab/labs/spec"
	"v6lab.dev/v6lab/topologies"
)

func defaultSpec(t testing.TB) string {
	t.Helper()
	data, err := topologies.Get("default")
	require.NoError(t, err)
	return string(data)
}

// problems parses a crafted spec and returns its problems (it must have some).
func problems(t *testing.T, doc string) spec.ErrorList {
	t.Helper()
	_, err := Parse([]byte(doc), "crafted.yaml")
	require.Error(t, err)
	var errs spec.ErrorList
	require.ErrorAs(t, err, &errs, "%v", err)
	return errs
}

func hasProblem(errs spec.ErrorList, path, detail string) bool {
	for _, e := range errs {
		if e.Path == path && strings.Contains(e.Detail, detail) {
			return true
		}
	}
	return false
}

// aliasBomb is a spec whose anchors expand to about 10^8 nodes (27 KB of them took
// 53 s and 13.7 GB in validate before aliases were refused).
func aliasBomb() string {
	var b strings.Builder
	b.WriteString("apiVersion: v6lab.dev/v1alpha1\nkind: Lab\nmetadata: {name: bomb}\nspec:\n  x0: &a0 [r, r, r, r, r, r, r, r, r, r]\n")
	for i := 1; i <= 8; i++ {
		fmt.Fprintf(&b, "  x%d: &a%d [*a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d]\n", i, i, i-1, i-1, i-1, i-1, i-1, i-1, i-1, i-1, i-1, i-1)
	}
	b.WriteString("  routers: *a8\n")
	return b.String()
}

func TestCraftedSpecs(t *testing.T) {
	base := defaultSpec(t)
	for _, tc := range []struct {
		name, doc, path, detail string
	}{
		{"anchors and aliases", aliasBomb(), "", "anchors and aliases are not accepted"},
		{"a second document", base + "---\napiVersion: v6lab.dev/v1alpha1\n", "", "a second YAML document"},
		{"a float for an integer", strings.Replace(base, "asn: 65000", "asn: 65000.5", 1), "spec.routers[0].asn", "wrong type"},
		{"a multicast parent", strings.Replace(base, "parent: 2001:db8::/48", "parent: ff05::/48", 1), "spec.addressing.parent", "multicast"},
		{"a link-local parent", strings.Replace(base, "parent: 2001:db8::/48", "parent: fe80::/48", 1), "spec.addressing.parent", "link-local"},
		{"the unspecified parent", strings.Replace(base, "parent: 2001:db8::/48", "parent: ::/48", 1), "spec.addressing.parent", "unspecified"},
		{"a parent in the management range", strings.Replace(base, "parent: 2001:db8::/48", "parent: fd36:6c61:6200::/48", 1), "spec.addressing.parent", "management range"},
		{"a router with no links", strings.Replace(strings.Replace(base, "links: [leaf1, leaf2]", "links: [leaf1]", 1), "links: [leaf2]               # peer link: a second path edge1 -> leaf2", "", 1),
			"spec.routers[2].links", "not connected to the fabric"},
		{"a node behind a router outside the fabric", strings.Replace(strings.Replace(base, "links: [leaf1, leaf2]", "links: [leaf1]", 1), "links: [leaf2]               # peer link: a second path edge1 -> leaf2", "", 1),
			"spec.nodes[2].router", "not connected to the fabric"},
		{"the kube-system namespace", strings.Replace(base, "{name: app-a, id: 1}", "{name: app-a, id: 1, namespace: kube-system}", 1), "spec.applications[0].namespace", "reserved"},
		{"the default namespace", strings.Replace(base, "{name: app-a, id: 1}", "{name: app-a, id: 1, namespace: default}", 1), "spec.applications[0].namespace", "reserved"},
		{"a management subnet outside the management range", strings.Replace(base, "podMaskSize: 80 ", "podMaskSize: 80\n    management: fd00:1::/64 ", 1),
			"spec.addressing.management", "not a /64 of"},
		{"300 routers", strings.Replace(base, "  routers:\n", "  routers:\n"+manyRouters(300), 1), "spec.routers", "303 entries"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			errs := problems(t, tc.doc)
			assert.True(t, hasProblem(errs, tc.path, tc.detail), "want %s: %q in\n%v", tc.path, tc.detail, errs)
		})
	}
}

func manyRouters(n int) string {
	var b strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "    - {name: r%d, role: leaf, asn: %d, links: [edge1]}\n", i, 4200000000+i)
	}
	return b.String()
}

// An unknown field does not hide the value problems of the same spec: both come at
// once (an IPv4 parent was reported only once the unknown field was gone).
func TestDecodeAndPlanProblemsTogether(t *testing.T) {
	doc := strings.Replace(defaultSpec(t), "parent: 2001:db8::/48", "parent: 10.0.0.0/8", 1)
	doc = strings.Replace(doc, "      role: edge\n", "      role: edge\n      linkz: []\n", 1)
	errs := problems(t, doc)
	assert.True(t, hasProblem(errs, "spec.routers[0].linkz", "unknown field"), "%v", errs)
	assert.True(t, hasProblem(errs, "spec.addressing.parent", "IPv4"), "%v", errs)
}

// A spec with thousands of problems prints the first ones and says how many more.
func TestManyProblemsArePrintedBounded(t *testing.T) {
	var b strings.Builder
	b.WriteString("apiVersion: v6lab.dev/v1alpha1\nkind: Lab\nmetadata: {name: x}\nspec:\n")
	for i := 0; i < 200; i++ {
		fmt.Fprintf(&b, "  unknown%d: 1\n", i)
	}
	_, err := Parse([]byte(b.String()), "many.yaml")
	require.Error(t, err)
	msg := err.Error()
	assert.Contains(t, msg, "... and ")
	assert.LessOrEqual(t, strings.Count(msg, "\n  - "), spec.MaxShownErrors)
}

func TestSpecLargerThanTheBoundIsRefused(t *testing.T) {
	doc := defaultSpec(t) + "#" + strings.Repeat("x", spec.MaxSpecBytes) + "\n"
	errs := problems(t, doc)
	assert.Contains(t, errs[0].Detail, "more than the")
}

// BenchmarkValidateAliasBomb measures the refusal of the alias bomb (53 s and 13.7 GB
// before aliases were refused).
func BenchmarkValidateAliasBomb(b *testing.B) {
	doc := []byte(aliasBomb())
	b.ReportAllocs()
	for b.Loop() {
		_, _ = Parse(doc, "bomb.yaml")
	}
}

// BenchmarkValidateLargeSpec is a spec just under the size bound, full of problems.
func BenchmarkValidateLargeSpec(b *testing.B) {
	head, rest, _ := strings.Cut(defaultSpec(b), "  applications:\n")
	var sb strings.Builder
	sb.WriteString(head + "  applications:\n")
	for sb.Len() < spec.MaxSpecBytes-len(rest)-100 {
		sb.WriteString("    - {name: x, id: 999, podPool: 10.0.0.0/8}\n")
	}
	sb.WriteString(rest)
	doc := []byte(sb.String())
	b.ReportAllocs()
	for b.Loop() {
		_, _ = Parse(doc, "large.yaml")
	}
}

// A pinned management subnet is used as given.
func TestPinnedManagementSubnet(t *testing.T) {
	doc := strings.Replace(defaultSpec(t), "podMaskSize: 80 ", "podMaskSize: 80\n    management: fd36:6c61:6200:77::/64 ", 1)
	l, err := Parse([]byte(doc), "pinned.yaml")
	require.NoError(t, err)
	assert.Equal(t, "fd36:6c61:6200:77::/64", l.Plan.Management.IPv6Subnet.String())
	r, err := l.Renamed("other")
	require.NoError(t, err)
	assert.NotEqual(t, l.Plan.Management.IPv6Subnet, r.Plan.Management.IPv6Subnet, "a renamed lab derives its own")
}
