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
