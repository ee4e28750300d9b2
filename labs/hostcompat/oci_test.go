package hostcompat

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const allButSysResource = (uint64(1)<<41 - 1) &^ (1 << 24)

func TestFilterSpecDropsWhatTheHostCannotGrant(t *testing.T) {
	in := `{"ociVersion":"1.0.2","process":{"args":["sh"],"oomScoreAdj":-999,
	"capabilities":{"bounding":["CAP_NET_ADMIN","CAP_SYS_RESOURCE"],"effective":["CAP_SYS_RESOURCE"],"permitted":["CAP_SYS_ADMIN"]},
	"rlimits":[{"type":"RLIMIT_NOFILE","hard":18446744073709551615,"soft":1048576},{"type":"RLIMIT_CORE","hard":0,"soft":0}]},
	"annotations":{"keep":"me"}}`
	lim := Limits{Bounding: allButSysResource, OOMScoreAdj: 0, HardLimits: map[string]uint64{"RLIMIT_NOFILE": 524288}}
	out, changes, err := FilterSpec([]byte(in), lim)
	require.NoError(t, err)
	assert.Len(t, changes, 5, "%v", changes)

	var got struct {
		Process struct {
			OOMScoreAdj  int                 `json:"oomScoreAdj"`
			Capabilities map[string][]string `json:"capabilities"`
			Rlimits      []struct {
				Type       string
				Hard, Soft uint64
			} `json:"rlimits"`
		} `json:"process"`
		Annotations map[string]string `json:"annotations"`
	}
	require.NoError(t, json.Unmarshal(out, &got))
	assert.Equal(t, []string{"CAP_NET_ADMIN"}, got.Process.Capabilities["bounding"])
	assert.Empty(t, got.Process.Capabilities["effective"])
	assert.Equal(t, []string{"CAP_SYS_ADMIN"}, got.Process.Capabilities["permitted"])
	assert.Equal(t, 0, got.Process.OOMScoreAdj)
	assert.Equal(t, uint64(524288), got.Process.Rlimits[0].Hard)
	assert.Equal(t, uint64(524288), got.Process.Rlimits[0].Soft)
	assert.Equal(t, "me", got.Annotations["keep"], "unknown fields survive")
}

// On a host that can grant everything, the spec passes through byte for byte.
func TestFilterSpecIsANoOpOnANormalHost(t *testing.T) {
	in := []byte(`{"process":{"oomScoreAdj":0,"capabilities":{"bounding":["CAP_SYS_RESOURCE"]},"rlimits":[{"type":"RLIMIT_NOFILE","hard":1024,"soft":1024}]}}`)
	out, changes, err := FilterSpec(in, Limits{Bounding: ^uint64(0), HardLimits: map[string]uint64{"RLIMIT_NOFILE": 1 << 20}})
	require.NoError(t, err)
	assert.Empty(t, changes)
	assert.Equal(t, in, out)
}

func TestFilterProcessFile(t *testing.T) {
	in := []byte(`{"args":["ip","a"],"capabilities":{"effective":["CAP_SYS_RESOURCE","CAP_BPF"]}}`)
	out, changes, err := FilterProcess(in, Limits{Bounding: allButSysResource})
	require.NoError(t, err)
	assert.Len(t, changes, 1)
	assert.Contains(t, string(out), `"effective":["CAP_BPF"]`)
	_, _, err = FilterProcess([]byte("{"), Limits{})
	assert.Error(t, err)
}

func TestBoundingSetAndMissing(t *testing.T) {
	p := filepath.Join(t.TempDir(), "status")
	require.NoError(t, os.WriteFile(p, []byte("Name:\tx\nCapBnd:\t000001fffeffffff\n"), 0o644))
	bnd, err := BoundingSet(p)
	require.NoError(t, err)
	assert.Equal(t, []string{"CAP_SYS_RESOURCE"}, Missing(bnd, 40))
	assert.Empty(t, Missing(^uint64(0), 40))
	assert.Equal(t, 24, CapNumber("CAP_SYS_RESOURCE"))
	assert.Equal(t, 45, CapNumber("CAP_45"))
}

// Detection judges the engine's capabilities, not v6lab's own: a full set here and a
// restricted engine still needs the filter, and the report says whose set it read.
func TestDetectFromTheEnginesStatus(t *testing.T) {
	p := filepath.Join(t.TempDir(), "status")
	require.NoError(t, os.WriteFile(p, []byte("Name:\tdockerd\nCapBnd:\t000001fffeffffff\n"), 0o644))
	r, err := DetectFrom(p, "dockerd (pid 42)")
	require.NoError(t, err)
	assert.True(t, r.Has(CapabilityFilter))
	assert.Equal(t, "dockerd (pid 42)", r.CapSource)
	for _, n := range r.Needs {
		if n.Name == CapabilityFilter {
			assert.Contains(t, n.Reason, "dockerd (pid 42)")
		}
	}
	require.NoError(t, os.WriteFile(p, []byte("Name:\tdockerd\nCapBnd:\t000001ffffffffff\n"), 0o644))
	r, err = DetectFrom(p, "dockerd (pid 42)")
	require.NoError(t, err)
	assert.False(t, r.Has(CapabilityFilter), "a full bounding set needs no filter")
}
