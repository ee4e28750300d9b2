package host

import (
	"archive/tar"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"v6lab.dev/v6lab/labs/hostcompat"
)

// requireDocker skips locally without a Docker engine; in CI (CI set) it fails instead,
// because .ci/run runs `make host-setup` first.
func requireDocker(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test (-short)")
	}
	if err := exec.Command("docker", "info").Run(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("docker is not running in CI (make host-setup should have started it): %v", err)
		}
		t.Skip("no Docker engine; run: make host-setup")
	}
}

// A privileged container runs on this host with the setup applied; where the host
// needs the capability filter, plain runc really fails (the adaptation is what makes
// it work), and on a normal host no wrapper is in use at all.
func TestPrivilegedContainerRuns(t *testing.T) {
	requireDocker(t)
	rep, err := hostcompat.Detect()
	require.NoError(t, err)

	dir := t.TempDir()
	bin := filepath.Join(dir, "capprobe")
	build := exec.Command("go", "build", "-o", bin, "./testdata/capprobe")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := build.CombinedOutput()
	require.NoError(t, err, "%s", out)

	image := "v6lab-test/capprobe:latest"
	var tarball bytes.Buffer
	tw := tar.NewWriter(&tarball)
	data, err := os.ReadFile(bin)
	require.NoError(t, err)
	require.NoError(t, tw.WriteHeader(&tar.Header{Name: "capprobe", Mode: 0o755, Size: int64(len(data))}))
	_, err = tw.Write(data)
	require.NoError(t, err)
	require.NoError(t, tw.Close())
	imp := exec.Command("docker", "import", "-", image)
	imp.Stdin = &tarball
	out, err = imp.CombinedOutput()
	require.NoError(t, err, "%s", out)
	t.Cleanup(func() { _ = exec.Command("docker", "rmi", "-f", image).Run() })

	out, err = exec.Command("docker", "run", "--rm", "--privileged", image, "/capprobe").CombinedOutput()
	require.NoError(t, err, "privileged container failed:\n%s", out)
	assert.Contains(t, string(out), "CapEff:")

	info, err := exec.Command("docker", "info", "--format", "{{.DefaultRuntime}}").Output()
	require.NoError(t, err)
	if rep.Has(hostcompat.CapabilityFilter) {
		assert.Equal(t, WrapperRuntime, strings.TrimSpace(string(info)))
		out, err = exec.Command("docker", "run", "--rm", "--runtime", "runc", "--privileged", image, "/capprobe").CombinedOutput()
		assert.Error(t, err, "plain runc started a privileged container, so the host does not need the filter:\n%s", out)
		assert.Contains(t, string(out), "apply caps")
	} else {
		assert.NotEqual(t, WrapperRuntime, strings.TrimSpace(string(info)), "a normal host must not use the wrapper")
	}
}
