// Package underlay proves v6lab's capture and verdict engine on the real FRR underlay,
// before Kubernetes exists: each check passes on a good lab and fails on a lab broken on
// purpose (its negative control), and outages are measured against injected faults.
package underlay

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

	probewire "v6lab.dev/v6lab/fixtures/probe/wire"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"v6lab.dev/v6lab/labs/capture"
	"v6lab.dev/v6lab/labs/faults"
	"v6lab.dev/v6lab/labs/lab"
	"v6lab.dev/v6lab/labs/plan"
	"v6lab.dev/v6lab/labs/runtime"
	"v6lab.dev/v6lab/labs/verdict"
)

const probePort = 9000

// env is one running experiment lab: the default fabric with the world host moved
// behind leaf2, so that client -> world crosses the fabric and has two paths
// (edge1-leaf2 direct, or edge1-leaf1-leaf2).
type env struct {
	t      *testing.T
	p      *plan.Plan
	client netip.Addr
	world  netip.Addr
	pcaps  string
}

var shared *env

func TestMain(m *testing.M) {
	code := m.Run()
	if shared != nil {
		_ = runtime.Down(context.Background(), shared.p.Lab, opts(nil))
		_ = os.RemoveAll(shared.pcaps)
	}
	if stateDir != "" {
		_ = os.RemoveAll(stateDir)
	}
	os.Exit(code)
}

var stateDir string

func opts(out *bytes.Buffer) runtime.Options {
	bin, _ := filepath.Abs("../../bin")
	if stateDir == "" {
		stateDir, _ = os.MkdirTemp("", "v6lab-underlay-")
	}
	o := runtime.Options{StateDir: stateDir, BinDir: bin, UnderlayOnly: true}
	if out != nil {
		o.Out = out
	}
	return o
}

func setup(t *testing.T) *env {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test (-short)")
	}
	if shared != nil {
		shared.t = t
		return shared
	}
	bin, _ := filepath.Abs("../../bin")
	if err := exec.Command("docker", "info").Run(); err != nil || !exists(filepath.Join(bin, "containerlab")) {
		if os.Getenv("CI") != "" {
			t.Fatal("Docker or bin/containerlab missing: make test runs make tools and host setup first")
		}
		t.Skip("Docker or bin/containerlab missing (make tools host-setup)")
	}
	data, err := os.ReadFile("../../topologies/default.yaml")
	require.NoError(t, err)
	doc := strings.Replace(string(data), "name: default", "name: uexp", 1)
	doc = strings.Replace(doc, "{name: world, role: world, router: edge1}", "{name: world, role: world, router: leaf2}", 1)
	l, err := lab.Parse([]byte(doc), "test:uexp")
	require.NoError(t, err)
	var out bytes.Buffer
	if err := runtime.Up(context.Background(), l, opts(&out)); err != nil {
		t.Fatalf("up: %v\n%s", err, out.String())
	}
	e := &env{t: t, p: l.Plan, client: l.Plan.HostByRole("client").Address, world: l.Plan.HostByRole("world").Address}
	e.pcaps, err = os.MkdirTemp("", "v6lab-underlay-pcap-")
	require.NoError(t, err)
	shared = e
	_, err = e.exec("world", "sh", "-c", "v6lab-probe serve --http '' >/dev/null 2>&1 &")
	require.NoError(t, err)
	// Ready means reachable: BGP sessions are up before their routes have arrived.
	deadline := time.Now().Add(time.Minute)
	for {
		_, err := e.exec("client", "ping", "-6", "-c", "1", "-W", "1", e.world.String())
		if err == nil {
			break
		}
		require.True(t, time.Now().Before(deadline), "the client never reached the world host: %v", err)
		time.Sleep(200 * time.Millisecond)
	}
	return e
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

func (e *env) exec(member string, args ...string) (string, error) {
	out, err := exec.Command("docker", append([]string{"exec", e.p.ContainerName(member)}, args...)...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %v: %w: %s", member, args, err, out)
	}
	return string(out), nil
}

func (e *env) mustExec(member string, args ...string) string {
	e.t.Helper()
	out, err := e.exec(member, args...)
	require.NoError(e.t, err)
	return out
}

// probeSummary is what v6lab-probe send prints.
type probeSummary = probewire.SendSummary

// sendProbes runs a probe stream from the client to the world host while capturing on
// the world host's link; it returns the decoded capture and the sender's summary.
func (e *env) sendProbes(name string, args ...string) ([]verdict.Packet, probeSummary) {
	e.t.Helper()
	dir := filepath.Join(e.pcaps, name)
	s, err := capture.Start(context.Background(), dir, 30*time.Second,
		capture.Spec{Name: "world-eth1", Container: e.p.ContainerName("world"), Iface: "eth1",
			Filter: capture.Filter{Proto: "udp", Port: probePort}})
	require.NoError(e.t, err)
	cmd := append([]string{"v6lab-probe", "send", "--to", netip.AddrPortFrom(e.world, probePort).String(), "--wait", "300ms"}, args...)
	out, err := e.exec("client", cmd...)
	res := s.Stop()
	require.NoError(e.t, err, out)
	require.NoError(e.t, capture.RequireTraffic(res), "sanity: the capture must see the probes")
	var sum probeSummary
	require.NoError(e.t, json.Unmarshal([]byte(out), &sum), out)
	pkts, err := verdict.ReadFile(res[0].File)
	require.NoError(e.t, err)
	return pkts, sum
}

func requests() verdict.Match { return verdict.Match{Proto: "udp", DstPort: probePort} }

// no-masquerade: the world host sees the client's own address; with a SNAT rule on
// edge1 (in the path), the same check fails and names the translated source.
func TestNoMasquerade(t *testing.T) {
	e := setup(t)
	clientNet := []netip.Prefix{e.p.HostByRole("client").Subnet}

	pkts, sum := e.sendProbes("masq-good", "--count", "50", "--interval", "5ms")
	v := verdict.Source(pkts, requests(), clientNet)
	assert.True(t, v.Pass, "%+v", v)
	assert.Equal(t, 50, v.Matched)
	assert.Equal(t, map[string]int{e.client.String(): 50}, sum.Observed, "the responder echoes the client's address")

	// Negative control: masquerade everything from the client's subnet leaving edge1.
	edgeLo := e.p.Router("edge1").Loopback
	rules := faults.Masquerade("v6lab_negative", clientNet[0], edgeLo)
	_, err := execStdin(e.p.ContainerName("edge1"), rules, "nft", "-f", "-")
	require.NoError(t, err)
	restored := false
	restore := func() {
		if !restored {
			restored = true
			e.mustExec("edge1", "nft", "delete", "table", "ip6", "v6lab_negative")
		}
	}
	defer restore()

	pkts, sum = e.sendProbes("masq-broken", "--count", "50", "--interval", "5ms")
	v = verdict.Source(pkts, requests(), clientNet)
	assert.False(t, v.Pass, "the check must fail on a masquerading router")
	assert.Equal(t, 50, v.Offenders)
	require.NotEmpty(t, v.Evidence)
	assert.Equal(t, edgeLo.String(), v.Evidence[0].Src, "the verdict names the translated source")
	assert.Equal(t, 50, sum.Observed[edgeLo.String()], "the responder saw the translated source too")

	restore()
	pkts, _ = e.sendProbes("masq-restored", "--count", "20", "--interval", "5ms")
	assert.True(t, verdict.Source(pkts, requests(), clientNet).Pass, "restored lab passes again")
}

// GUA/pool: a source inside the expected /64 passes; a host address outside it fails.
func TestSourcePool(t *testing.T) {
	e := setup(t)
	clientNet := e.p.HostByRole("client").Subnet

	pkts, _ := e.sendProbes("pool-good", "--count", "20", "--interval", "5ms")
	assert.True(t, verdict.Source(pkts, requests(), []netip.Prefix{clientNet}).Pass)

	// Negative control: the client also holds an address outside its /64 and sends from it.
	outside := netip.MustParseAddr("2001:db8:0:e09::2")
	e.mustExec("client", "ip", "-6", "addr", "add", outside.String()+"/128", "dev", "eth1", "nodad")
	defer e.exec("client", "ip", "-6", "addr", "del", outside.String()+"/128", "dev", "eth1")
	pkts, _ = e.sendProbes("pool-outside", "--count", "20", "--interval", "5ms", "--source", outside.String(), "--wait", "100ms")
	v := verdict.Source(pkts, requests(), []netip.Prefix{clientNet})
	assert.False(t, v.Pass, "a source outside the pool fails")
	assert.Equal(t, outside.String(), v.Evidence[0].Src)
}

// streamDuring sends 10 ms probes for total while fault() runs after lead; it returns
// the outage verdict of the requests seen at the world host, and the fault's times.
func (e *env) streamDuring(name string, total, lead time.Duration, fault func() (time.Time, time.Time)) (verdict.OutageVerdict, time.Time, time.Time) {
	e.t.Helper()
	type result struct {
		pkts []verdict.Packet
	}
	done := make(chan result, 1)
	go func() {
		pkts, _ := e.sendProbes(name, "--interval", "10ms", "--duration", total.String())
		done <- result{pkts}
	}()
	time.Sleep(lead)
	start, end := fault()
	r := <-done
	return verdict.Outage(r.pkts, requests(), 0, 0), start, end
}

// Outage with a single path: the world host's only link goes down for a known time; the
// loss window equals the downtime within the tolerance.
func TestOutageSinglePath(t *testing.T) {
	e := setup(t)
	const down = 2 * time.Second
	const tolerance = 400 * time.Millisecond
	leafIf := e.p.HostByRole("world").RouterIface
	v, start, end := e.streamDuring("outage-single", 5*time.Second, 1500*time.Millisecond, func() (time.Time, time.Time) {
		e.mustExec("leaf2", "ip", "link", "set", leafIf, "down")
		s := time.Now()
		time.Sleep(down)
		e.mustExec("leaf2", "ip", "link", "set", leafIf, "up")
		return s, time.Now()
	})
	t.Logf("injected %s (%s .. %s); measured %+v", end.Sub(start).Round(time.Millisecond), start.Format(time.StampMilli), end.Format(time.StampMilli), v.Windows)
	require.Len(t, v.Windows, 1, "one loss window: %+v", v)
	w := v.Windows[0]
	injected := end.Sub(start)
	assert.InDelta(t, float64(injected.Milliseconds()), w.DurationMs, float64(tolerance.Milliseconds()),
		"the loss window matches the injected downtime")
	assert.WithinDuration(t, start, w.Start, tolerance, "the window starts when the link went down")
	assert.Positive(t, v.Lost)

	// Negative control of the instrument: with no fault, no window.
	v, _, _ = e.streamDuring("outage-none", 2*time.Second, 500*time.Millisecond, func() (time.Time, time.Time) {
		return time.Now(), time.Now()
	})
	assert.Empty(t, v.Windows, "no fault, no window: %+v", v.Windows)
}

// Outage with two paths: edge1's direct link to leaf2 silently drops everything (no link
// down event), so only BGP's hold timer can find out; traffic then reroutes through
// leaf1. The loss window is the reroute time, bounded by the hold time.
func TestOutageReroute(t *testing.T) {
	e := setup(t)
	hold := time.Duration(e.p.Spec.BGP.HoldSeconds) * time.Second
	edgeIf := ""
	for _, i := range e.p.Router("edge1").Interfaces {
		if i.Peer == "leaf2" {
			edgeIf = i.Name
		}
	}
	require.NotEmpty(t, edgeIf)
	blackhole := faults.Blackhole("v6lab_blackhole", edgeIf)
	var removed bool
	cleanup := func() {
		if !removed {
			removed = true
			_, _ = e.exec("edge1", faults.Remove("v6lab_blackhole")...)
		}
	}
	defer cleanup()
	v, start, _ := e.streamDuring("outage-reroute", hold+6*time.Second, time.Second, func() (time.Time, time.Time) {
		_, err := execStdin(e.p.ContainerName("edge1"), blackhole, "nft", "-f", "-")
		require.NoError(t, err)
		return time.Now(), time.Now()
	})
	require.NotEmpty(t, v.Windows, "the blackhole must cause a loss window: %+v", v)
	w := v.Windows[0]
	reroute := w.End.Sub(start)
	t.Logf("blackholed edge1:%s at %s; loss window %.0f ms; traffic rerouted %.0f ms after the fault (hold time %s)",
		edgeIf, start.Format(time.StampMilli), w.DurationMs, float64(reroute.Milliseconds()), hold)
	assert.WithinDuration(t, start, w.Start, 400*time.Millisecond, "the window starts at the fault")
	assert.LessOrEqual(t, reroute, hold+time.Second, "BGP reroutes within the hold time")
	assert.Greater(t, reroute, time.Second, "a silent failure is not detected instantly (no BFD)")

	// The session really went down and traffic now avoids the dead link.
	ss, err := runtime.Router(e.p, "edge1").Sessions(context.Background())
	require.NoError(t, err)
	for _, s := range ss {
		if s.Peer == edgeIf {
			assert.False(t, s.Established(), "edge1's session over the blackholed link is down")
		}
	}
	cleanup()
}

func execStdin(container, stdin string, args ...string) (string, error) {
	cmd := exec.Command("docker", append([]string{"exec", "-i", container}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%v: %w: %s", args, err, out)
	}
	return string(out), nil
}

// The IPv4 check on a real data link: none while the lab runs; the control puts an IPv4
// address on the link and sends one packet, and the check fails.
func TestNoIPv4OnDataLinks(t *testing.T) {
	e := setup(t)
	dir := filepath.Join(e.pcaps, "ipv4")
	run := func(inject bool) verdict.IPv4Verdict {
		s, err := capture.Start(context.Background(), dir, 10*time.Second,
			capture.Spec{Name: fmt.Sprintf("edge1-eth1-%v", inject), Container: e.p.ContainerName("edge1"), Iface: "eth1"})
		require.NoError(t, err)
		e.mustExec("client", "ping", "-6", "-c", "3", "-i", "0.2", e.p.Router("leaf1").Loopback.String())
		if inject {
			e.mustExec("edge1", "ip", "addr", "add", "192.0.2.1/24", "dev", "eth1")
			defer e.mustExec("edge1", "ip", "addr", "del", "192.0.2.1/24", "dev", "eth1")
			_, _ = e.exec("edge1", "ping", "-4", "-c", "1", "-W", "1", "192.0.2.2")
		}
		res := s.Stop()
		require.NoError(t, capture.RequireTraffic(res))
		pkts, err := verdict.ReadFile(res[0].File)
		require.NoError(t, err)
		return verdict.IPv4(pkts)
	}
	assert.True(t, run(false).Pass)
	v := run(true)
	assert.False(t, v.Pass, "an IPv4 frame on the data link fails the check")
	assert.Positive(t, v.IPv4)
}
