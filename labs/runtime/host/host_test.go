package host

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRegisterRuntimeMergesAndIsIdempotent(t *testing.T) {
	p := filepath.Join(t.TempDir(), "daemon.json")
	require.NoError(t, os.WriteFile(p, []byte(`{"log-driver":"local","runtimes":{"other":{"path":"/x"}}}`), 0o644))
	changed, err := registerRuntime(p)
	require.NoError(t, err)
	assert.True(t, changed)
	var cfg map[string]any
	data, _ := os.ReadFile(p)
	require.NoError(t, json.Unmarshal(data, &cfg))
	assert.Equal(t, "local", cfg["log-driver"], "other settings are kept")
	assert.Equal(t, WrapperRuntime, cfg["default-runtime"])
	rt := cfg["runtimes"].(map[string]any)
	assert.Contains(t, rt, "other")
	assert.Equal(t, WrapperPath, rt[WrapperRuntime].(map[string]any)["path"])

	changed, err = registerRuntime(p)
	require.NoError(t, err)
	assert.False(t, changed, "second run changes nothing")
}

func TestRegisterRuntimeCreatesFileAndRejectsBadJSON(t *testing.T) {
	p := filepath.Join(t.TempDir(), "sub", "daemon.json")
	changed, err := registerRuntime(p)
	require.NoError(t, err)
	assert.True(t, changed)
	require.NoError(t, os.WriteFile(p, []byte("{"), 0o644))
	_, err = registerRuntime(p)
	assert.ErrorContains(t, err, "daemon.json")
}

// The first change keeps daemon.json as it was; undo puts it back byte for byte (and
// removes a daemon.json that v6lab created).
func TestDaemonJSONBackupAndRestore(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "daemon.json")
	orig := []byte("{\n  \"log-driver\": \"local\"\n}\n")
	require.NoError(t, os.WriteFile(p, orig, 0o644))
	_, err := registerRuntime(p)
	require.NoError(t, err)
	_, err = mergeDaemonJSON(p, map[string]any{"default-cgroupns-mode": "private"})
	require.NoError(t, err)
	kept, err := os.ReadFile(Backup(p))
	require.NoError(t, err)
	assert.Equal(t, orig, kept, "the backup is the file before the first change")
	restored, err := restoreDaemonJSON(p)
	require.NoError(t, err)
	assert.True(t, restored)
	back, err := os.ReadFile(p)
	require.NoError(t, err)
	assert.Equal(t, orig, back)
	assert.NoFileExists(t, Backup(p))
	again, err := restoreDaemonJSON(p)
	require.NoError(t, err)
	assert.False(t, again, "nothing left to undo")
	entries, _ := os.ReadDir(dir)
	assert.Len(t, entries, 1, "no temporary file left")

	fresh := filepath.Join(t.TempDir(), "daemon.json")
	_, err = registerRuntime(fresh)
	require.NoError(t, err)
	_, err = restoreDaemonJSON(fresh)
	require.NoError(t, err)
	assert.NoFileExists(t, fresh, "a daemon.json v6lab created is removed")
}
