package runtime

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"v6lab.dev/v6lab/labs/lab"
)

// fakeDocker puts a stand-in docker (and iptables) first in PATH: it lists no
// container and knows no network, and records every call. Down's sweep then acts only
// on files, which the test owns.
func fakeDocker(t *testing.T) (calls string) {
	t.Helper()
	bin := t.TempDir()
	calls = filepath.Join(bin, "calls")
	script := "#!/bin/sh\necho \"$(basename $0) $*\" >> " + calls + "\ncase \"$1\" in network) exit 1;; esac\nexit 0\n"
	for _, name := range []string{"docker", "iptables"} {
		require.NoError(t, os.WriteFile(filepath.Join(bin, name), []byte(script), 0o755))
	}
	t.Setenv("PATH", bin+":"+os.Getenv("PATH"))
	return calls
}

func TestDownRefusesNamesThatAreNotLabNames(t *testing.T) {
	calls := fakeDocker(t)
	state := t.TempDir()
	outside := filepath.Join(state, "..", filepath.Base(state)+"-outside")
	require.NoError(t, os.MkdirAll(outside, 0o755))
	t.Cleanup(func() { os.RemoveAll(outside) })
	o := Options{StateDir: filepath.Join(state, "x", "y"), Out: &bytes.Buffer{}}
	for _, name := range []string{"", "..", "../../" + filepath.Base(outside), "a/b", "UPPER", ".hidden"} {
		err := Down(context.Background(), name, o)
		require.Error(t, err, "%q", name)
		assert.Contains(t, err.Error(), "lab name", "%q", name)
	}
	assert.DirExists(t, outside, "nothing outside the state directory is removed")
	_, err := os.Stat(calls)
	assert.True(t, os.IsNotExist(err), "docker is never called for a refused name")
}

// Lab "a" and lab "a-b" share the name prefix v6lab-a-: down a removes only a's own
// netns links (named by its plan), never a-b's.
func TestDownRemovesOnlyItsOwnNetnsLinks(t *testing.T) {
	fakeDocker(t)
	netns := t.TempDir()
	old := netnsDir
	netnsDir = netns
	t.Cleanup(func() { netnsDir = old })
	state := t.TempDir()
	o := Options{StateDir: state, Out: &bytes.Buffer{}}
	dir := o.LabDir("a")
	require.NoError(t, os.MkdirAll(dir, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "plan.json"),
		[]byte(`{"containerPrefix":"v6lab-a-","routers":[{"name":"edge1"}],"nodes":[],"hosts":[{"name":"client"}]}`), 0o644))
	for _, l := range []string{"v6lab-a-edge1", "v6lab-a-client", "v6lab-a-b-edge1"} {
		require.NoError(t, os.WriteFile(filepath.Join(netns, l), nil, 0o644))
	}
	require.NoError(t, Down(context.Background(), "a", o))
	assert.NoFileExists(t, filepath.Join(netns, "v6lab-a-edge1"))
	assert.NoFileExists(t, filepath.Join(netns, "v6lab-a-client"))
	assert.FileExists(t, filepath.Join(netns, "v6lab-a-b-edge1"), "lab a-b's link is not lab a's")
	assert.NoDirExists(t, dir)
}

// down --all takes names from v6lab's own traces only (labelled containers, run
// directories holding v6lab's spec), and never one that fails the name rule. (The
// test reads the names DownAll would remove; no test calls DownAll.)
func TestDownAllTakesOnlyV6labLabs(t *testing.T) {
	bin := t.TempDir()
	// docker ps --filter label=v6lab.dev/lab --format '{{.Label ...}}': one good name, one
	// that is not a lab name.
	script := "#!/bin/sh\nprintf 'lab-x\\n../../etc\\n'\n"
	require.NoError(t, os.WriteFile(filepath.Join(bin, "docker"), []byte(script), 0o755))
	t.Setenv("PATH", bin+":"+os.Getenv("PATH"))
	state := t.TempDir()
	var out bytes.Buffer
	o := Options{StateDir: state, Out: &out}
	require.NoError(t, os.MkdirAll(filepath.Join(state, "labs", "notes"), 0o755)) // no spec.yaml: not a lab v6lab made
	require.NoError(t, os.MkdirAll(filepath.Join(state, "labs", "lab-y"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(state, "labs", "lab-y", "spec.yaml"), []byte("kind: Lab\n"), 0o644))
	names, err := allLabs(context.Background(), o)
	require.NoError(t, err)
	assert.ElementsMatch(t, []string{"lab-x", "lab-y"}, names)
	assert.Contains(t, out.String(), `skipping "../../etc"`)
}

func TestLockRefusesASecondHolder(t *testing.T) {
	o := Options{StateDir: t.TempDir()}
	unlock, err := Lock(o, "a", "up")
	require.NoError(t, err)
	_, err = Lock(o, "a", "down")
	require.ErrorIs(t, err, ErrLabBusy)
	assert.Contains(t, err.Error(), "up", "names what holds it")
	other, err := Lock(o, "b", "up")
	require.NoError(t, err, "another lab is not locked")
	other()
	unlock()
	again, err := Lock(o, "a", "down")
	require.NoError(t, err, "released")
	again()
}

// Lab "a" with member "b-edge1" and lab "a-b" with member "edge1" both make
// v6lab-a-b-edge1: up refuses the second, naming the container and its lab.
func TestUpRefusesContainerNamesAnotherLabUses(t *testing.T) {
	bin := t.TempDir()
	// docker ps -a --format '{{.Names}}\t{{.Label ...}}': lab a-b's edge1 exists.
	script := "#!/bin/sh\nprintf 'v6lab-a-b-edge1\\ta-b\\nsomething-else\\t\\n'\n"
	require.NoError(t, os.WriteFile(filepath.Join(bin, "docker"), []byte(script), 0o755))
	t.Setenv("PATH", bin+":"+os.Getenv("PATH"))
	data, err := os.ReadFile("../../topologies/default.yaml")
	require.NoError(t, err)
	doc := strings.Replace(strings.Replace(string(data), "name: default", "name: a", 1), "name: edge1", "name: b-edge1", 1)
	doc = strings.ReplaceAll(doc, "router: edge1", "router: b-edge1")
	l, err := lab.Parse([]byte(doc), "test:a")
	require.NoError(t, err)
	err = nameClashes(context.Background(), l.Plan)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "v6lab-a-b-edge1 (lab a-b)")
	other, err := lab.Parse([]byte(strings.Replace(string(data), "name: default", "name: c", 1)), "test:c")
	require.NoError(t, err)
	assert.NoError(t, nameClashes(context.Background(), other.Plan), "no clash, no refusal")
}

// scriptedDocker is a stand-in docker for removeNetwork: "network rm" fails with
// docker's "has active endpoints" until an endpoint was disconnected (or always, with
// stuck), "network inspect" lists the given endpoints, and "container inspect" knows
// only the containers in alive. Every call is recorded.
func scriptedDocker(t *testing.T, endpoints string, alive ...string) (calls string) {
	t.Helper()
	bin := t.TempDir()
	calls = filepath.Join(bin, "calls")
	done := filepath.Join(bin, "disconnected")
	script := `#!/bin/sh
echo "$*" >> ` + calls + `
case "$1 $2" in
"network rm") [ -f ` + done + ` ] && exit 0; echo "Error response from daemon: error while removing network: network $3 id 58f4 has active endpoints" >&2; exit 1;;
"network inspect") echo '` + endpoints + `'; exit 0;;
"network disconnect") touch ` + done + `; exit 0;;
"container inspect") for c in ` + strings.Join(alive, " ") + `; do [ "$c" = "$5" ] && exit 0; done; exit 1;;
esac
exit 0
`
	require.NoError(t, os.WriteFile(filepath.Join(bin, "docker"), []byte(script), 0o755))
	t.Setenv("PATH", bin+":"+os.Getenv("PATH"))
	return calls
}

// CI saw docker refuse a lab's network right after the lab's containers were removed
// ("has active endpoints"): the stale endpoint of a removed container is disconnected
// and the removal retried.
func TestRemoveNetworkDisconnectsStaleEndpoints(t *testing.T) {
	calls := scriptedDocker(t, `{"4f1c":{"Name":"v6lab-x-server1"}}`)
	require.NoError(t, removeNetwork(context.Background(), "v6lab-x", map[string]bool{}))
	data, err := os.ReadFile(calls)
	require.NoError(t, err)
	assert.Contains(t, string(data), "network disconnect --force v6lab-x v6lab-x-server1")
	assert.Equal(t, 2, strings.Count(string(data), "network rm v6lab-x"), "removed on the second try")
}

// An endpoint of a running container that is not the lab's is never disconnected:
// down fails and names it.
func TestRemoveNetworkLeavesForeignContainers(t *testing.T) {
	calls := scriptedDocker(t, `{"4f1c":{"Name":"someones-app"}}`, "someones-app")
	err := removeNetwork(context.Background(), "v6lab-x", map[string]bool{"v6lab-x-server1": true})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "someones-app")
	data, _ := os.ReadFile(calls)
	assert.NotContains(t, string(data), "disconnect")
}
