package runtime

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"v6lab.dev/v6lab/labs/lab"
	"v6lab.dev/v6lab/labs/spec"
)

// integration returns runtime options for a real lab, or skips (locally) / fails (CI)
// when the host is not ready. make test builds bin/ and runs host setup first.
func integration(t *testing.T) Options {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test (-short)")
	}
	bin, err := filepath.Abs("../../bin")
	require.NoError(t, err)
	problem := ""
	if err := exec.Command("docker", "info").Run(); err != nil {
		problem = "no Docker engine (make host-setup)"
	} else if _, err := findTool(bin, "containerlab"); err != nil {
		problem = err.Error()
	}
	if problem != "" {
		if os.Getenv("CI") != "" {
			t.Fatal(problem)
		}
		t.Skip(problem)
	}
	var out bytes.Buffer
	t.Cleanup(func() { t.Logf("lifecycle output:\n%s", out.String()) })
	return Options{StateDir: t.TempDir(), BinDir: bin, Out: &out, UnderlayOnly: true}
}

// testLab is the embedded default lab under another name, so tests never touch a lab
// a person is using.
func testLab(t *testing.T, name string) *lab.Lab {
	t.Helper()
	data, err := os.ReadFile("../../topologies/default.yaml")
	require.NoError(t, err)
	doc := strings.Replace(string(data), "name: default", "name: "+name, 1)
	l, err := lab.Parse([]byte(doc), "test:"+name)
	require.NoError(t, err)
	return l
}

func dockerExec(t *testing.T, container string, args ...string) (string, error) {
	t.Helper()
	out, err := exec.Command("docker", append([]string{"exec", container}, args...)...).CombinedOutput()
	return string(out), err
}

func vethCount(t *testing.T) int {
	out, err := exec.Command("ip", "-o", "link", "show", "type", "veth").Output()
	require.NoError(t, err)
	return strings.Count(string(out), "\n")
}

func TestUnderlayLifecycle(t *testing.T) {
	o := integration(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	vethsBefore := vethCount(t)

	// itest-b5897's derived management subnet is itest-a's (16-bit hash): up must
	// give it another.
	a, b := testLab(t, "itest-a"), testLab(t, "itest-b5897")
	require.Equal(t, a.Plan.Management.IPv6Subnet, b.Plan.Management.IPv6Subnet, "the names collide")
	t.Cleanup(func() {
		// Only the labs this test made: a person's lab on the same host is not touched.
		assert.NoError(t, Down(context.Background(), a.Plan.Lab, o))
		assert.NoError(t, Down(context.Background(), b.Plan.Lab, o))
		assert.Equal(t, vethsBefore, vethCount(t), "down leaves no veth behind")
	})

	// Two labs side by side.
	require.NoError(t, Up(ctx, a, o))
	require.NoError(t, Up(ctx, b, o))
	require.NotEqual(t, a.Plan.Management.IPv6Subnet, b.Plan.Management.IPv6Subnet)
	again, err := lab.Load(filepath.Join(o.LabDir(b.Plan.Lab), "spec.yaml"))
	require.NoError(t, err)
	assert.Equal(t, b.Plan.Management.IPv6Subnet, again.Plan.Management.IPv6Subnet, "the picked subnet is in the lab's spec")

	t.Run("up again changes nothing", func(t *testing.T) {
		var out bytes.Buffer
		o2 := o
		o2.Out = &out
		require.NoError(t, Up(ctx, a, o2))
		assert.Contains(t, out.String(), "already running; nothing changed")
		assert.Contains(t, out.String(), "(unchanged)")
	})

	t.Run("a changed spec on a running lab is refused before its files are rewritten", func(t *testing.T) {
		before, err := os.ReadFile(filepath.Join(o.LabDir(a.Plan.Lab), "plan.json"))
		require.NoError(t, err)
		changed, err := a.Variant("with another pod mask", func(s *spec.Lab) { s.Spec.Addressing.PodMaskSize = 72 })
		require.NoError(t, err)
		err = Up(ctx, changed, o)
		require.Error(t, err)
		assert.Contains(t, err.Error(), "runs another configuration")
		after, err := os.ReadFile(filepath.Join(o.LabDir(a.Plan.Lab), "plan.json"))
		require.NoError(t, err)
		assert.Equal(t, string(before), string(after), "the running lab's files are left as they are")
	})

	t.Run("status reads every session and learned prefix", func(t *testing.T) {
		st, err := GetStatus(ctx, a.Plan)
		require.NoError(t, err)
		assert.Empty(t, st.Errors)
		assert.Len(t, st.Members, len(Members(a.Plan, true)))
		fabric := 0
		for _, s := range st.Sessions {
			if strings.HasPrefix(s.Peer, "eth") {
				fabric++
				assert.True(t, s.Established(), "%+v", s)
			}
		}
		assert.Equal(t, 6, fabric, "three fabric links, two ends each")
		world := a.Plan.HostByRole(spec.RoleWorld)
		var learned bool
		for _, r := range st.Routes {
			if r.Router == "leaf2" && r.Prefix == world.Subnet.String() {
				learned = true
			}
		}
		assert.True(t, learned, "leaf2 learned the world subnet by BGP")
	})

	t.Run("client reaches the world host and every router loopback over IPv6", func(t *testing.T) {
		client := a.Plan.ContainerName("client")
		targets := []string{a.Plan.HostByRole(spec.RoleWorld).Address.String()}
		for _, r := range a.Plan.Routers {
			targets = append(targets, r.Loopback.String())
		}
		for _, dst := range targets {
			out, err := dockerExec(t, client, "ping", "-6", "-c", "2", "-W", "2", dst)
			assert.NoError(t, err, "ping %s:\n%s", dst, out)
		}
	})

	t.Run("a data link carries IPv6 and no IPv4", func(t *testing.T) {
		// Sanity and assertion from one capture: IPv6 must appear (else the capture saw
		// nothing and proves nothing), IPv4 must not.
		edge := a.Plan.ContainerName("edge1")
		leafLo := a.Plan.Router("leaf1").Loopback.String()
		capture := exec.Command("docker", "exec", edge, "timeout", "6", "tcpdump", "-i", "eth1", "-n", "-U", "-w", "/tmp/itest.pcap")
		require.NoError(t, capture.Start())
		time.Sleep(1500 * time.Millisecond)
		_, err := dockerExec(t, a.Plan.ContainerName("client"), "ping", "-6", "-c", "5", "-i", "0.2", leafLo)
		require.NoError(t, err)
		_ = capture.Wait() // timeout ends tcpdump with 124
		count := func(filter string) int {
			out, err := dockerExec(t, edge, "sh", "-c", "tcpdump -r /tmp/itest.pcap -n "+filter+" 2>/dev/null | wc -l")
			require.NoError(t, err, out)
			n, err := strconv.Atoi(strings.TrimSpace(out))
			require.NoError(t, err, out)
			return n
		}
		assert.GreaterOrEqual(t, count("icmp6"), 10, "the pings (and replies) crossed edge1:eth1")
		assert.Zero(t, count("ip"), "IPv4 on a data link")
		assert.Zero(t, count("arp"), "ARP on a data link")
	})

	t.Run("a session that is not up yields a diagnosis", func(t *testing.T) {
		leaf2 := b.Plan.ContainerName("leaf2")
		_, err := dockerExec(t, leaf2, "ip", "link", "set", "eth1", "down")
		require.NoError(t, err)
		_, err = waitBGP(ctx, b.Plan, 3*time.Second)
		require.Error(t, err)
		msg := err.Error()
		assert.Contains(t, msg, "not Established")
		assert.Contains(t, msg, "edge1 -> eth2", "names the session on the other side of the link")
		assert.Contains(t, msg, "last FRR log lines of")
		_, err = dockerExec(t, leaf2, "ip", "link", "set", "eth1", "up")
		require.NoError(t, err)
		_, err = waitBGP(ctx, b.Plan, time.Minute)
		assert.NoError(t, err, "the session comes back")
	})

	t.Run("down removes everything", func(t *testing.T) {
		require.NoError(t, Down(ctx, a.Plan.Lab, o))
		assert.Empty(t, leftovers(ctx, a.Plan.Lab, planContainers(a.Plan)))
		assert.NoDirExists(t, o.LabDir(a.Plan.Lab))
		st, err := GetStatus(ctx, b.Plan)
		require.NoError(t, err)
		assert.Len(t, st.Members, len(Members(b.Plan, true)), "the other lab is untouched")
	})
}

// down works on a lab whose up failed half-way: here, containers exist but the run
// directory is gone.
func TestDownAfterInterruptedUp(t *testing.T) {
	o := integration(t)
	ctx := context.Background()
	l := testLab(t, "itest-c")
	require.NoError(t, Up(ctx, l, o))
	require.NoError(t, os.RemoveAll(o.LabDir(l.Plan.Lab)))
	require.NoError(t, Down(ctx, l.Plan.Lab, o))
	assert.Empty(t, leftovers(ctx, l.Plan.Lab, planContainers(l.Plan)))
}

// Ctrl-C during `v6lab up` stops it (its commands are killed with their process
// groups), leaves a lab that `down` removes, and nothing after down.
func TestInterruptedUpLeavesALabDownRemoves(t *testing.T) {
	o := integration(t)
	const name = "itest-int"
	data, err := os.ReadFile("../../topologies/default.yaml")
	require.NoError(t, err)
	specFile := filepath.Join(t.TempDir(), "lab.yaml")
	require.NoError(t, os.WriteFile(specFile, []byte(strings.Replace(string(data), "name: default", "name: "+name, 1)), 0o644))
	l := testLab(t, name)
	t.Cleanup(func() { _ = Down(context.Background(), name, o) })

	cmd := exec.Command(filepath.Join(o.BinDir, "v6lab"), "up", "--underlay-only", "--spec", specFile, "--state-dir", o.StateDir)
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	require.NoError(t, cmd.Start())
	// Interrupt once the deploy step is under way (render has finished).
	deadline := time.Now().Add(2 * time.Minute)
	for !strings.Contains(out.String(), "render") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	require.Contains(t, out.String(), "render", "up reached its render step")
	time.Sleep(300 * time.Millisecond)
	require.NoError(t, cmd.Process.Signal(os.Interrupt))
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		assert.Error(t, err, "an interrupted up does not succeed:\n%s", out.String())
	case <-time.After(time.Minute):
		_ = cmd.Process.Kill()
		t.Fatalf("up did not stop within a minute of SIGINT:\n%s", out.String())
	}
	require.NoError(t, Down(context.Background(), name, o))
	assert.Empty(t, leftovers(context.Background(), name, planContainers(l.Plan)))
	assert.NoDirExists(t, o.LabDir(name))
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
