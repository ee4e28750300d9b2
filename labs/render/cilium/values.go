// Package cilium renders Cilium's Helm values (per datapath and keyed by Cilium minor
// version where they differ) and the Cilium objects of a lab: a CiliumPodIPPool per
// application, a CiliumLoadBalancerIPPool per application, and the BGP control plane
// v2 resources (CiliumBGPClusterConfig, CiliumBGPPeerConfig, CiliumBGPAdvertisement,
// CiliumBGPNodeConfigOverride with an explicit router-id per node).
package cilium

import (
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"v6lab.dev/v6lab/fixtures/node/config"

	"v6lab.dev/v6lab/labs/plan"
	"v6lab.dev/v6lab/labs/spec"
)

// Values is the subset of the chart's values v6lab sets. Field names are the chart's.
type Values struct {
	KubeProxyReplacement  bool            `json:"kubeProxyReplacement"`
	K8sServiceHost        string          `json:"k8sServiceHost"`
	K8sServicePort        string          `json:"k8sServicePort"`
	IPv4                  Enabled         `json:"ipv4"`
	IPv6                  Enabled         `json:"ipv6"`
	RoutingMode           string          `json:"routingMode"`
	TunnelProtocol        string          `json:"tunnelProtocol,omitempty"`
	UnderlayProtocol      string          `json:"underlayProtocol,omitempty"`
	IPv6NativeRoutingCIDR string          `json:"ipv6NativeRoutingCIDR,omitempty"`
	AutoDirectNodeRoutes  bool            `json:"autoDirectNodeRoutes"`
	EnableIPv4Masquerade  bool            `json:"enableIPv4Masquerade"`
	EnableIPv6Masquerade  bool            `json:"enableIPv6Masquerade"`
	BPF                   BPF             `json:"bpf"`
	Devices               string          `json:"devices"`
	IPAM                  IPAM            `json:"ipam"`
	LoadBalancer          LoadBalancer    `json:"loadBalancer"`
	BGPControlPlane       BGPControlPlane `json:"bgpControlPlane"`
	// PMTUDiscovery makes a node answer a packet it cannot forward whole with an
	// ICMPv6 Packet Too Big: without it, a full-size request to a DSR VIP, to which
	// the entry node adds its 24-byte destination option, is lost without a word (the
	// pmtu check found it: 9452-byte UDP payloads on 9500-byte links, none answered).
	PMTUDiscovery PMTUDiscovery `json:"pmtuDiscovery"`
	Envoy         Enabled       `json:"envoy"`
	L7Proxy       bool          `json:"l7Proxy"`
	Hubble        Hubble        `json:"hubble"`
	Operator      Operator      `json:"operator"`
	Image         *Image        `json:"image,omitempty"`
	PreferIPv6    *bool         `json:"preferIpv6,omitempty"`
	CNI           *CNI          `json:"cni,omitempty"`
	Cgroup        Cgroup        `json:"cgroup"`
	// Sysctlfix off: its init container writes a systemd-sysctl drop-in on the host,
	// and a v6lab node has neither systemd nor a writable /proc/sys (read-only
	// before anything starts in it: a lab never changes the host's kernel settings).
	Sysctlfix Enabled `json:"sysctlfix"`
	// Prometheus makes every agent serve its metrics (prometheus-serve-addr) on the
	// node, where the suite scrapes its drop counters (no-unexpected-drops).
	Prometheus Prometheus `json:"prometheus"`
	// ExtraEnv, ExtraVolumes and ExtraVolumeMounts give the offline agent image's clang
	// its object cache (Images.ObjectCache), a directory of the node's.
	ExtraEnv          []corev1.EnvVar      `json:"extraEnv,omitempty"`
	ExtraVolumes      []corev1.Volume      `json:"extraVolumes,omitempty"`
	ExtraVolumeMounts []corev1.VolumeMount `json:"extraVolumeMounts,omitempty"`
}

// The object cache as the agent sees it, and the variable that names it to clang-cache
// (fixtures/images/cilium).
const (
	ObjectCacheInAgent = "/var/cache/v6lab/bpf"
	ObjectCacheEnv     = "V6LAB_BPF_CACHE"
)

// Prometheus holds prometheus.* values: the agent's metrics endpoint.
type Prometheus struct {
	Enabled bool `json:"enabled"`
	Port    int  `json:"port"`
}

// MetricsPort is the port every agent serves its Prometheus metrics on.
const MetricsPort = 9962

// Cgroup holds cgroup.* values: where the agent finds the cgroup2 hierarchy it attaches
// its socket load balancer to. A v6lab node mounts its own cgroup there before anything
// starts (see fixtures/node), so that one node's socket LB never translates the
// connections of other processes on the machine; the agent uses that mount, and
// AutoMount is off (the mount-cgroup init container would only find it there).
type Cgroup struct {
	AutoMount Enabled `json:"autoMount"`
	HostRoot  string  `json:"hostRoot"`
}

// Hubble holds hubble.* values.
type Hubble struct {
	Enabled bool `json:"enabled"`
	// EventBufferCapacity is each agent's flow ring (a power of two less one): room
	// for the flows of a check between its start and the suite's query of them.
	EventBufferCapacity int         `json:"eventBufferCapacity"`
	Relay               HubbleRelay `json:"relay"`
}

// HubbleRelay holds hubble.relay.* values.
type HubbleRelay struct {
	Enabled bool   `json:"enabled"`
	Image   *Image `json:"image,omitempty"`
	// Gops is off: its agent writes under $HOME, which the relay's read-only root
	// (uid 65532, no home) refuses ("mkdir /.config: read-only file system").
	Gops Enabled `json:"gops"`
}

// HubbleEventBuffer is the agents' flow ring: 16383 flows (the chart's default 4095
// holds a few seconds of a failover stream).
const HubbleEventBuffer = 16383

// Enabled is the chart's common {enabled: bool} block.
type Enabled struct {
	Enabled bool `json:"enabled"`
}

// BPF holds bpf.* values.
type BPF struct {
	Masquerade bool `json:"masquerade"`
	// AutoMount off: the node mounts its own bpffs before anything starts in it
	// (fixtures/node), so the agent's mount-bpf-fs init container has nothing to do
	// and costs each agent start a container (about a second on the default lab).
	AutoMount Enabled `json:"autoMount"`
	// LBModeAnnotation lets one Service choose SNAT or DSR (service.cilium.io/forwarding-mode):
	// the conformance suite's DSR negative control is a SNAT Service next to DSR ones.
	LBModeAnnotation bool `json:"lbModeAnnotation,omitempty"`
	// LBAlgorithmAnnotation lets one Service choose its backend selection
	// (service.cilium.io/lb-algorithm): maglev-consistency's control is a Service
	// with the random algorithm next to the lab's Maglev ones.
	LBAlgorithmAnnotation bool `json:"lbAlgorithmAnnotation,omitempty"`
}

// IPAM holds ipam.* values.
type IPAM struct {
	Mode string `json:"mode"`
	// MultiPoolPreAllocation: "pool=N,..." — how many free addresses each agent keeps
	// of each pool from its start.
	MultiPoolPreAllocation string       `json:"multiPoolPreAllocation,omitempty"`
	Operator               IPAMOperator `json:"operator"`
}

// IPAMOperator holds ipam.operator.* values.
type IPAMOperator struct {
	AutoCreateCiliumPodIPPools map[string]AutoPool `json:"autoCreateCiliumPodIPPools,omitempty"`
}

// AutoPool is a pool the operator creates at install time.
type AutoPool struct {
	IPv6 PoolFamily `json:"ipv6"`
}

// LoadBalancer holds loadBalancer.* values.
type LoadBalancer struct {
	Mode        string `json:"mode"`
	DSRDispatch string `json:"dsrDispatch,omitempty"`
	Algorithm   string `json:"algorithm"`
	// Acceleration is XDP (native, best-effort); omitted when disabled.
	Acceleration string `json:"acceleration,omitempty"`
}

// PMTUDiscovery holds pmtuDiscovery.* values.
type PMTUDiscovery struct {
	Enabled bool `json:"enabled"`
}

// BGPControlPlane holds bgpControlPlane.* values.
type BGPControlPlane struct {
	Enabled bool `json:"enabled"`
}

// Operator holds operator.* values.
type Operator struct {
	Replicas  int      `json:"replicas"`
	Image     *Image   `json:"image,omitempty"`
	ExtraArgs []string `json:"extraArgs,omitempty"`
}

// operatorArgs make the operator's leader election outlast a frozen node: the failover
// check's node-stopped freezes a node for the BGP hold time and 2 s more, and the lab's
// only API server runs on a node. With the default renew deadline (10 s) the operator
// could not renew its lease while the server was frozen (11 s), exited ("Leader
// election lost") and restarted into crash-loop back-off (measured: 3 restarts in one
// suite, and the next wait for a ready lab 9.5 s). The operator releases its lease
// when it stops (an upgrade's new operator does not wait out the longer lease).
func operatorArgs(holdSeconds int) []string {
	renew := time.Duration(holdSeconds+2+10) * time.Second
	return []string{
		"--leader-election-renew-deadline=" + renew.String(),
		"--leader-election-lease-duration=" + (renew + 10*time.Second).String(),
	}
}

// Image overrides an image reference (offline: the locally built images).
type Image struct {
	Override   string `json:"override,omitempty"`
	PullPolicy string `json:"pullPolicy,omitempty"`
}

// CNI holds cni.* values.
type CNI struct {
	BinPath string `json:"binPath"`
}

// Images are optional image overrides; empty means the chart's public images.
type Images struct {
	Agent    string
	Operator string
	// CNIBinPath is where the node's container runtime looks for CNI plugins, when it
	// is not the chart's default (/opt/cni/bin).
	CNIBinPath string
	// ObjectCache is a node's directory the agent image's clang keeps the datapath
	// objects it compiled in (v6lab's offline images only: their clang is clang-cache),
	// so that an agent that starts again, on any node of any lab, reads the objects the
	// same sources and flags gave before instead of compiling them again.
	ObjectCache string
}

// DefaultPoolName is the pool pods use when their namespace names none.
const DefaultPoolName = "default"

// poolPreAllocation is how many free addresses of each pool an agent keeps at hand
// (Cilium's default for its default pool).
const poolPreAllocation = 8

// preAllocation is ipam.multiPoolPreAllocation: the default pool and every
// application's.
func preAllocation(p *plan.Plan) string {
	pools := []string{fmt.Sprintf("%s=%d", DefaultPoolName, poolPreAllocation)}
	for _, a := range p.Apps {
		pools = append(pools, fmt.Sprintf("%s=%d", a.Name, poolPreAllocation))
	}
	return strings.Join(pools, ",")
}

// ValuesFor renders the Helm values of a lab.
func ValuesFor(p *plan.Plan, img Images) (Values, error) {
	s := p.Spec
	minor := spec.CiliumMinor(s.Versions.Cilium)
	if minor == "" {
		return Values{}, fmt.Errorf("cilium: unsupported version %q", s.Versions.Cilium)
	}
	server := p.Server()
	if server == nil {
		return Values{}, fmt.Errorf("cilium: the lab has no server node")
	}
	v := Values{
		KubeProxyReplacement: true,
		K8sServiceHost:       server.Address.String(),
		K8sServicePort:       "6443",
		IPv4:                 Enabled{false},
		IPv6:                 Enabled{true},
		// eth1 is every node's link to its router; eth0 is management and must not
		// carry NodePort/LB traffic.
		Devices: devices(p),
		LoadBalancer: LoadBalancer{
			Mode:      string(s.LoadBalancer.Mode),
			Algorithm: s.LoadBalancer.Algorithm,
		},
		BGPControlPlane: BGPControlPlane{Enabled: true},
		PMTUDiscovery:   PMTUDiscovery{Enabled: true},
		// Envoy is C++ and not built offline; the lab uses no L7 feature.
		Envoy:   Enabled{false},
		L7Proxy: false,
		// Hubble's observer in every agent (its flows are set against the capture:
		// hubble.go in the suite) and hubble-relay, which v6lab observe reads; TLS
		// between them as the chart sets it up (certificates Helm generates).
		Hubble:    Hubble{Enabled: true, EventBufferCapacity: HubbleEventBuffer, Relay: HubbleRelay{Enabled: true}},
		Operator:  Operator{Replicas: 1, ExtraArgs: operatorArgs(s.BGP.HoldSeconds)},
		BPF:       BPF{LBAlgorithmAnnotation: true, AutoMount: Enabled{false}},
		Cgroup:    Cgroup{AutoMount: Enabled{false}, HostRoot: config.CiliumCgroupRoot},
		Sysctlfix: Enabled{false},
		// The agent runs in its node's namespace: the suite reads the metrics through
		// the node's management address, on the lab's own bridge.
		Prometheus: Prometheus{Enabled: true, Port: MetricsPort},
		// Multi-pool IPAM in both datapaths: the default pool is created at install
		// time, the per-application pools are objects (see Objects). Each agent takes
		// a block of every pool as it starts (preAllocation): left to the first pod of
		// a pool, the agent asks for one then, and that pod's sandbox fails ("pool not
		// (yet) available") until kubelet retries — 44 s for the suite's workload on
		// a new lab, 17 s once the blocks were there (measured).
		IPAM: IPAM{Mode: "multi-pool", MultiPoolPreAllocation: preAllocation(p), Operator: IPAMOperator{
			AutoCreateCiliumPodIPPools: map[string]AutoPool{
				DefaultPoolName: {IPv6: PoolFamily{CIDRs: []string{p.Pods.Default.String()}, MaskSize: p.PodMaskSize}},
			},
		}},
	}
	if a := s.LoadBalancer.Acceleration; a.Asked() {
		v.LoadBalancer.Acceleration = string(a)
	}
	if s.LoadBalancer.Mode == spec.LBModeDSR {
		// IPv6 extension-header dispatch ("opt" is the IPv4-option/IPv6-extension mode).
		v.LoadBalancer.DSRDispatch = "opt"
		v.BPF.LBModeAnnotation = true
	}
	switch s.Datapath {
	case spec.DatapathNative:
		v.RoutingMode = "native"
		v.IPv6NativeRoutingCIDR = p.Pods.Block.String()
	case spec.DatapathTunnel:
		v.RoutingMode = "tunnel"
		v.TunnelProtocol = "vxlan" // this kernel has no GENEVE
		v.UnderlayProtocol = "ipv6"
		// In tunnel mode pods egress through their node's address (the seed's trade-off).
		v.EnableIPv6Masquerade = true
		v.BPF.Masquerade = true
	}
	if minorAtLeast(minor, 1, 20) {
		// 1.20 added preferIpv6 (health probes, Hubble peers); the lab is IPv6 only.
		t := true
		v.PreferIPv6 = &t
	}
	if img.Agent != "" {
		v.Image = &Image{Override: img.Agent, PullPolicy: "Never"}
	}
	if img.Agent != "" {
		// The agent image carries hubble-relay (fixtures/images/cilium).
		v.Hubble.Relay.Image = &Image{Override: img.Agent, PullPolicy: "Never"}
	}
	if img.Operator != "" {
		v.Operator.Image = &Image{Override: img.Operator, PullPolicy: "Never"}
	}
	if img.CNIBinPath != "" {
		v.CNI = &CNI{BinPath: img.CNIBinPath}
	}
	if img.ObjectCache != "" {
		const vol = "v6lab-bpf-cache"
		dir := corev1.HostPathDirectoryOrCreate
		v.ExtraEnv = []corev1.EnvVar{{Name: ObjectCacheEnv, Value: ObjectCacheInAgent}}
		v.ExtraVolumes = []corev1.Volume{{Name: vol, VolumeSource: corev1.VolumeSource{
			HostPath: &corev1.HostPathVolumeSource{Path: img.ObjectCache, Type: &dir}}}}
		v.ExtraVolumeMounts = []corev1.VolumeMount{{Name: vol, MountPath: ObjectCacheInAgent}}
	}
	return v, nil
}

func minorAtLeast(minor string, major, min int) bool {
	var a, b int
	if _, err := fmt.Sscanf(minor, "%d.%d", &a, &b); err != nil {
		return false
	}
	return a > major || (a == major && b >= min)
}

// devices are the nodes' data links Cilium attaches to: eth1, the link to the router
// (it holds the node-ip, so it stays the direct-routing device: DSR and pod routes
// leave by it), and the layer 2 segment's port where the lab has one (what MetalLB
// draws to a VIP arrives there and must meet Cilium's load balancer).
func devices(p *plan.Plan) string {
	if p.Segment != nil {
		return "eth1," + plan.SegmentIface
	}
	return "eth1"
}
