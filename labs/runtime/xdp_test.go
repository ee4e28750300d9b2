package runtime

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The XDP mode is the kernel's (ip -j -d link): attached natively, generically or not.
func TestParseXDP(t *testing.T) {
	mode, prog, err := parseXDP(`[{"ifname":"eth1","linkinfo":{"info_kind":"veth"}}]`)
	require.NoError(t, err)
	assert.Equal(t, "none", mode)
	assert.Empty(t, prog)
	mode, prog, err = parseXDP(`[{"ifname":"eth1","xdp":{"mode":1,"prog":{"id":412,"name":"cil_xdp_entry","tag":"ab"}}}]`)
	require.NoError(t, err)
	assert.Equal(t, "native", mode)
	assert.Equal(t, "cil_xdp_entry", prog)
	mode, _, err = parseXDP(`[{"ifname":"eth1","xdp":{"mode":2,"prog":{"id":9,"name":"x"}}}]`)
	require.NoError(t, err)
	assert.Equal(t, "generic", mode)
	_, _, err = parseXDP(`Device "eth1" does not exist.`)
	assert.Error(t, err)
	_, _, err = parseXDP(`[]`)
	assert.Error(t, err)
}

func TestXDPSummary(t *testing.T) {
	native := XDPAttach{"native", "cil_xdp_entry"}
	assert.Equal(t, "native on 3 of 3 nodes: cil_xdp_entry", XDPSummary(map[string]XDPAttach{
		"server1": native, "agent1": native, "agent2": native}))
	assert.Equal(t, "agent1,server1: native p; agent2: none", XDPSummary(map[string]XDPAttach{
		"server1": {"native", "p"}, "agent1": {"native", "p"}, "agent2": {"none", ""}}))
}

func TestFatalError(t *testing.T) {
	line := `time=2026-12-03T11:47:57Z level=fatal msg="Failed to compile XDP program" module=agent.datapath.loader error="attaching XDP program to interface eth1: attaching XDP program: attaching program cil_xdp_entry using bpf_link: failed to attach link: create link: numerical result out of range"`
	assert.Equal(t, "attaching XDP program to interface eth1: attaching XDP program: attaching program cil_xdp_entry using bpf_link: failed to attach link: create link: numerical result out of range", fatalError(line))
	assert.Equal(t, "no error field", fatalError(" no error field "))
}
