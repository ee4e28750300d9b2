package render_test

import (
	"bytes"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	yaml "go.yaml.in/yaml/v3"

	"v6lab.dev/v6lab/labs/lab"
	"v6lab.dev/v6lab/labs/render"
	"v6lab.dev/v6lab/labs/render/clab"
	"v6lab.dev/v6lab/topologies"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

func renderLab(t *testing.T, name string) render.Files {
	t.Helper()
	l, err := lab.Load("embedded:" + name)
	require.NoError(t, err)
	files, err := render.All(l, render.Options{})
	require.NoError(t, err)
	return files
}

// Every embedded lab renders to exactly its golden files (go test -update rewrites them).
func TestGolden(t *testing.T) {
	for _, name := range topologies.Names() {
		t.Run(name, func(t *testing.T) {
			files := renderLab(t, name)
			dir := filepath.Join("testdata", name)
			if *update {
				require.NoError(t, os.RemoveAll(dir))
				require.NoError(t, files.Write(dir))
			}
			var onDisk []string
			require.NoError(t, filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
				if err == nil && !d.IsDir() {
					rel, _ := filepath.Rel(dir, p)
					onDisk = append(onDisk, filepath.ToSlash(rel))
				}
				return err
			}))
			var rendered []string
			for _, f := range files {
				rendered = append(rendered, f.Path)
				want, err := os.ReadFile(filepath.Join(dir, f.Path))
				require.NoError(t, err, "missing golden file; run: go test ./labs/render -update")
				assert.Equal(t, string(want), string(f.Data), "%s differs from its golden file; run: go test ./labs/render -update", f.Path)
			}
			assert.ElementsMatch(t, onDisk, rendered, "golden files and rendered files differ")
		})
	}
}

// requireVtysh finds FRR's vtysh; it skips locally without it, and fails in CI, which
// installs Debian's frr (.ci/run).
func requireVtysh(t *testing.T) string {
	t.Helper()
	vtysh, err := exec.LookPath("vtysh")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("vtysh not found: CI must install Debian's frr (see .ci/run)")
		}
		t.Skip("vtysh not installed (apt-get install frr); CI runs this check")
	}
	return vtysh
}

// Every rendered frr.conf passes real FRR's own syntax check.
func TestFRRConfigsPassVtyshDryRun(t *testing.T) {
	vtysh := requireVtysh(t)
	for _, name := range topologies.Names() {
		files := renderLab(t, name)
		n := 0
		for _, f := range files {
			if !strings.HasSuffix(f.Path, "/frr.conf") {
				continue
			}
			n++
			p := filepath.Join(t.TempDir(), "frr.conf")
			require.NoError(t, os.WriteFile(p, f.Data, 0o644))
			out, err := exec.Command(vtysh, "--dryrun", "-f", p).CombinedOutput()
			assert.NoError(t, err, "%s/%s rejected by vtysh --dryrun:\n%s", name, f.Path, out)
		}
		assert.Positive(t, n, "no frr.conf rendered for %s", name)
	}
}

// Every router's start script is valid sh and waits for exactly its plan interfaces.
func TestRouterStartScripts(t *testing.T) {
	for _, name := range topologies.Names() {
		files := renderLab(t, name)
		n := 0
		for _, f := range files {
			if !strings.HasSuffix(f.Path, "/start") {
				continue
			}
			n++
			out, err := exec.Command("sh", "-n", "-c", string(f.Data)).CombinedOutput()
			assert.NoError(t, err, "%s/%s: %s", name, f.Path, out)
			assert.Contains(t, string(f.Data), "for ifc in eth1 ", "%s/%s", name, f.Path)
		}
		assert.Positive(t, n, "no router start script rendered for %s", name)
	}
	out, err := exec.Command("sh", "-n", "-c", "for x in ; do").CombinedOutput()
	assert.Error(t, err, "sh -n accepted a broken script: %s", out)
}

// The dry run really rejects a broken config, so the check above can fail.
func TestVtyshDryRunRejectsBrokenConfig(t *testing.T) {
	vtysh := requireVtysh(t)
	files := renderLab(t, "default")
	conf, ok := files.Get("frr/leaf1/frr.conf")
	require.True(t, ok)
	broken := bytes.Replace(conf, []byte("neighbor NODES remote-as"), []byte("neighbor NODES remote-ass"), 1)
	p := filepath.Join(t.TempDir(), "frr.conf")
	require.NoError(t, os.WriteFile(p, broken, 0o644))
	out, err := exec.Command(vtysh, "--dryrun", "-f", p).CombinedOutput()
	assert.Error(t, err, "vtysh accepted a broken config:\n%s", out)
}

// The topology is what containerlab expects: every link endpoint names a node, no
// interface is used twice, and binds point at rendered files.
func TestTopologyIsConsistent(t *testing.T) {
	for _, name := range topologies.Names() {
		files := renderLab(t, name)
		data, ok := files.Get(name + ".clab.yml")
		require.True(t, ok)
		var topo clab.Topology
		require.NoError(t, yaml.Unmarshal(data, &topo))
		assert.Equal(t, name, topo.Name)
		used := map[string]bool{}
		for _, l := range topo.Topo.Links {
			for _, ep := range l.Endpoints {
				node, _, found := strings.Cut(ep, ":")
				require.True(t, found, ep)
				assert.Contains(t, topo.Topo.Nodes, node)
				assert.False(t, used[ep], "endpoint %s used twice", ep)
				used[ep] = true
			}
		}
		for n, node := range topo.Topo.Nodes {
			assert.Equal(t, "linux", node.Kind)
			assert.Equal(t, name, node.Labels[clab.LabelLab], n)
			for _, b := range node.Binds {
				src := strings.SplitN(b, ":", 2)[0]
				_, ok := files.Get(src)
				for _, d := range render.RuntimeDirs {
					ok = ok || src == d || strings.HasPrefix(src, d+"/")
				}
				ok = ok || src == render.WrapperOnHost
				assert.True(t, ok, "%s binds %s, which is neither rendered nor made by up", n, src)
			}
		}
	}
}

func TestModesDiffer(t *testing.T) {
	def := renderLab(t, "default")
	tun := renderLab(t, "tunnel")
	mlb := renderLab(t, "metallb")

	v, _ := def.Get("cilium/values.yaml")
	assert.Contains(t, string(v), "routingMode: native")
	assert.Contains(t, string(v), "enableIPv6Masquerade: false")
	assert.Contains(t, string(v), "dsrDispatch: opt")
	v, _ = tun.Get("cilium/values.yaml")
	assert.Contains(t, string(v), "routingMode: tunnel")
	assert.Contains(t, string(v), "tunnelProtocol: vxlan")
	assert.Contains(t, string(v), "underlayProtocol: ipv6")
	assert.NotContains(t, string(v), "dsr")

	_, ok := def.Get("metallb/objects.yaml")
	assert.False(t, ok, "no MetalLB objects with the cilium-bgp announcer")
	m, ok := mlb.Get("metallb/objects.yaml")
	require.True(t, ok)
	for _, kind := range []string{"kind: IPAddressPool", "kind: BGPPeer", "kind: BGPAdvertisement", "kind: BFDProfile", "bfdProfile: v6lab"} {
		assert.Contains(t, string(m), kind)
	}
	c, _ := mlb.Get("cilium/objects.yaml")
	assert.NotContains(t, string(c), "CiliumLoadBalancerIPPool", "MetalLB owns VIPs in metallb mode")
	assert.NotContains(t, string(c), "LoadBalancerIP")
	f, _ := mlb.Get("frr/leaf1/frr.conf")
	assert.Contains(t, string(f), "neighbor SPEAKERS bfd profile v6lab")
	assert.Contains(t, string(f), "neighbor 2001:db8::13 peer-group SPEAKERS")
	f, _ = tun.Get("frr/leaf1/frr.conf")
	assert.NotContains(t, string(f), "2001:db8:0:a01::/64", "tunnel mode routes no pod pools")
}

// Values are keyed by Cilium minor where the charts differ.
func TestCiliumValuesPerVersion(t *testing.T) {
	for version, wantPrefer := range map[string]bool{"1.18.4": false, "1.20.2": true} {
		l, err := lab.Load("embedded:default")
		require.NoError(t, err)
		l.Spec.Spec.Versions.Cilium = version
		files, err := render.All(l, render.Options{})
		require.NoError(t, err)
		v, _ := files.Get("cilium/values.yaml")
		assert.Equal(t, wantPrefer, strings.Contains(string(v), "preferIpv6: true"), version)
		assert.Contains(t, string(v), "Cilium "+version)
		assert.Contains(t, string(v), "mode: multi-pool", version)
	}
}

// The k3s distribution runs the public image with the rendered config and its role.
func TestK3sNodes(t *testing.T) {
	l, err := lab.Load("embedded:default")
	require.NoError(t, err)
	l.Spec.Spec.Versions.Kubernetes.Distribution = "k3s"
	l.Spec.Spec.Versions.Kubernetes.Version = "v1.34.4+k3s1"
	files, err := render.All(l, render.Options{})
	require.NoError(t, err)
	data, _ := files.Get("default.clab.yml")
	var topo clab.Topology
	require.NoError(t, yaml.Unmarshal(data, &topo))
	server := topo.Topo.Nodes["server1"]
	assert.Equal(t, "rancher/k3s:v1.34.4-k3s1", server.Image)
	assert.Equal(t, "server", server.Cmd)
	assert.Equal(t, "agent", topo.Topo.Nodes["agent1"].Cmd)
	assert.Contains(t, server.Binds, "k3s/server1/config.yaml:/etc/rancher/k3s/config.yaml")
	_, ok := files.Get("nodes/server1/node.json")
	assert.False(t, ok, "no upstream node files for k3s")
	cfg, _ := files.Get("k3s/agent1/config.yaml")
	assert.Contains(t, string(cfg), "server: https://[2001:db8::12]:6443")

	// k3s nodes get the host guard upstream nodes have: their entrypoint makes the
	// host's /proc/sys read-only, then execs k3s with the role.
	guardScript, ok := files.Get(render.K3sGuardPath)
	require.True(t, ok)
	assert.Contains(t, string(guardScript), "mount -o remount,bind,ro /proc/sys/kernel;")
	assert.Contains(t, string(guardScript), `exec /bin/k3s "$@"`)
	for _, n := range []string{"server1", "agent1", "agent2"} {
		node := topo.Topo.Nodes[n]
		assert.Equal(t, "/bin/sh /usr/local/lib/v6lab/guard.sh", node.Entrypoint, n)
		assert.Contains(t, node.Binds, "k3s/guard.sh:/usr/local/lib/v6lab/guard.sh:ro", n)
	}
}
