package metrics

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A scrape of a Cilium 1.19.3 agent (some of its families), as the lab's agents serve it.
func TestDropsOfAnAgent(t *testing.T) {
	f, err := os.Open("testdata/cilium-agent-1.19.3.txt")
	require.NoError(t, err)
	defer f.Close()
	fams, err := Parse(f)
	require.NoError(t, err)
	assert.Contains(t, fams, "cilium_forward_count_total")
	assert.Equal(t, map[Drop]float64{
		{"Invalid source ip", "EGRESS"}:         11,
		{"Unknown L3 target address", "EGRESS"}: 1,
		{"Stale or unroutable IP", "INGRESS"}:   2,
	}, Drops(fams))
}

// Labels other than reason and direction are summed over; no family, no drops.
func TestDropsSumsOtherLabels(t *testing.T) {
	fams, err := Parse(strings.NewReader(`# TYPE cilium_drop_count_total counter
cilium_drop_count_total{direction="INGRESS",reason="Policy denied",line="1"} 2
cilium_drop_count_total{direction="INGRESS",reason="Policy denied",line="2"} 3
`))
	require.NoError(t, err)
	assert.Equal(t, map[Drop]float64{{"Policy denied", "INGRESS"}: 5}, Drops(fams))
	assert.Empty(t, Drops(Families{}))
}

func TestDelta(t *testing.T) {
	a, b, c := Drop{"a", "EGRESS"}, Drop{"b", "INGRESS"}, Drop{"c", "EGRESS"}
	before := map[Drop]float64{a: 10, b: 4}
	after := map[Drop]float64{a: 12, b: 3, c: 1}
	// a grew by 2; b went down (its agent restarted): at least its 3 after; c is new.
	assert.Equal(t, map[Drop]float64{a: 2, b: 3, c: 1}, Delta(before, after))
	assert.Empty(t, Delta(after, after), "nothing grew")
}

func TestParseRejectsGarbage(t *testing.T) {
	_, err := Parse(strings.NewReader("cilium_drop_count_total{reason=\"x\" 1\n"))
	require.Error(t, err)
}

// Scrape reads a /metrics endpoint over HTTP and says what went wrong when it fails.
func TestScrape(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/metrics" {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write([]byte("# TYPE cilium_drop_count_total counter\ncilium_drop_count_total{direction=\"EGRESS\",reason=\"Policy denied\"} 7\n"))
	}))
	defer srv.Close()
	fams, err := Scrape(context.Background(), srv.URL+"/metrics", 5*time.Second)
	require.NoError(t, err)
	assert.Equal(t, map[Drop]float64{{"Policy denied", "EGRESS"}: 7}, Drops(fams))
	_, err = Scrape(context.Background(), srv.URL+"/nope", 5*time.Second)
	assert.ErrorContains(t, err, "404")
}

// A MetalLB 0.15.2 speaker's two endpoints in FRR mode (frr-metrics on 7473, the
// speaker on 7472), as the lab's speakers serve them: the series by family and labels.
func TestSeriesOfMetalLB(t *testing.T) {
	f, err := os.Open("testdata/metallb-frr-metrics-0.15.2.txt")
	require.NoError(t, err)
	defer f.Close()
	fams, err := Parse(f)
	require.NoError(t, err)
	s := Series(fams, "metallb_bgp_session_up", "metallb_bgp_opens_sent", "metallb_bfd_session_up", "metallb_no_such_family")
	assert.Equal(t, map[string]float64{
		`metallb_bgp_session_up{peer="2001:db8::11:179", vrf="default"}`: 1,
		`metallb_bgp_opens_sent{peer="2001:db8::11:179", vrf="default"}`: 1,
		`metallb_bfd_session_up{peer="2001:db8::11", vrf="default"}`:     1,
	}, s)

	sp, err := os.Open("testdata/metallb-speaker-0.15.2.txt")
	require.NoError(t, err)
	defer sp.Close()
	fams, err = Parse(sp)
	require.NoError(t, err)
	assert.Equal(t, map[string]float64{"metallb_k8s_client_config_loaded_bool": 1},
		Series(fams, "metallb_k8s_client_config_loaded_bool"), "a series without labels is its family's name")
}

// Changes: what changed, appeared and went away, in order; equal values are no change.
func TestChanges(t *testing.T) {
	before := map[string]float64{`up{peer="a"}`: 1, `up{peer="b"}`: 1, `opens{peer="a"}`: 1, `gone`: 3}
	after := map[string]float64{`up{peer="a"}`: 0, `up{peer="b"}`: 1, `opens{peer="a"}`: 2, `new`: 1}
	var got []string
	for _, c := range Changes(before, after) {
		got = append(got, c.String())
	}
	assert.Equal(t, []string{"gone 3 → none", "new none → 1", `opens{peer="a"} 1 → 2`, `up{peer="a"} 1 → 0`}, got)
	assert.Empty(t, Changes(before, before))
}
