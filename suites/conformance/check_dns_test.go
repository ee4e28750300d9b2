package conformance

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	probewire "v6lab.dev/v6lab/fixtures/probe/wire"
	"v6lab.dev/v6lab/labs/lab"
)

// Each way a DNS answer can be wrong has its kind: no answer, another address, an
// error code, a pod whose nameserver is not the cluster DNS.
func TestJudgeAnswer(t *testing.T) {
	l, err := lab.Load("")
	require.NoError(t, err)
	x := &Lab{Lab: l, Plan: l.Plan}
	server := "[" + l.Plan.ClusterDNS.String() + "]:53"
	q := dnsQuery{from: Pod{Name: "echo-1"}, name: "echo.app-a.svc.cluster.local", typ: "AAAA", want: []string{"fd00:6:96::1234"}}
	for _, c := range []struct {
		s    probewire.DNSSummary
		kind string
	}{
		{probewire.DNSSummary{Server: server, RCode: "Success", Answers: []string{"fd00:6:96::1234"}}, ""},
		{probewire.DNSSummary{Server: server, Error: "i/o timeout"}, kindNoAnswer},
		{probewire.DNSSummary{Server: server, RCode: "Success", Answers: []string{"fd00:6:96::99"}}, kindWrongAnswer},
		{probewire.DNSSummary{Server: server, RCode: "NameError"}, kindWrongAnswer},
		{probewire.DNSSummary{Server: "[2001:db8::53]:53", RCode: "Success", Answers: []string{"fd00:6:96::1234"}}, kindResolvConf},
	} {
		r := Result{Pass: true}
		judgeAnswer(x, q, c.s, &r)
		if c.kind == "" {
			assert.True(t, r.Pass, r.Reason)
			continue
		}
		assert.Equal(t, []string{c.kind}, r.Failures, r.Reason)
	}
	// An A query must get no address at all.
	r := Result{Pass: true}
	judgeAnswer(x, dnsQuery{name: q.name, typ: "A", want: []string{}}, probewire.DNSSummary{Server: server, RCode: "Success", Answers: []string{}}, &r)
	assert.True(t, r.Pass, r.Reason)
}
