package spec

// Defaults used when a field is left out.
const (
	DefaultParent           = "2001:db8::/48"
	DefaultServiceCIDR      = "fd00:6:96::/112"
	DefaultPodMaskSize      = 80
	DefaultClusterASN       = 64512
	DefaultKeepaliveSeconds = 3
	DefaultHoldSeconds      = 9
	DefaultBFDIntervalMs    = 300
	DefaultBFDMultiplier    = 3
	DefaultCiliumVersion    = "1.20.2"
	DefaultK8sVersion       = "v1.34.4"
	DefaultK3sVersion       = "v1.34.4+k3s1"
	DefaultMetalLBVersion   = "v0.15.2"
	// DefaultMaxUDPOutageMs admits what an agent's restart costs a stream through its
	// node today: the lab runs BGP without graceful restart (failover must be seen),
	// so a restarting agent's session goes down and its node's routes are withdrawn
	// until the new agent announces them again. Measured on the default lab, Cilium
	// 1.19.3 -> 1.20.2: outages of 10.3-12.0 s, agent restarts of 13.1-14.3 s; the
	// budget is 1.5x the longest restart, so a slower rollout shows as a regression
	// (v6lab compare) before it fails.
	DefaultMaxUDPOutageMs = 20000
)

// SetDefaults fills every field the user left out. It never overrides a set value.
func SetDefaults(l *Lab) {
	s := &l.Spec
	a := &s.Addressing
	setIf(&a.Parent, DefaultParent)
	setIf(&a.ServiceCIDR, DefaultServiceCIDR)
	if a.PodMaskSize == 0 {
		a.PodMaskSize = DefaultPodMaskSize
	}
	for i := range s.Applications {
		setIf(&s.Applications[i].Namespace, s.Applications[i].Name)
	}
	if s.Datapath == "" {
		s.Datapath = DatapathNative
	}
	lb := &s.LoadBalancer
	if lb.Announcer == "" {
		lb.Announcer = AnnouncerCiliumBGP
	}
	if lb.Mode == "" {
		lb.Mode = LBModeDSR
		if s.Datapath == DatapathTunnel {
			// DSR with IPv6 extension-header dispatch needs native routing.
			lb.Mode = LBModeSNAT
		}
	}
	setIf(&lb.Algorithm, "maglev")
	if lb.Announcer == AnnouncerMetalLBL2 && lb.SegmentRouter == "" {
		for _, h := range s.Hosts {
			if h.Role == RoleClient {
				lb.SegmentRouter = h.Router
				break
			}
		}
	}
	if lb.Acceleration == "" {
		lb.Acceleration = AccelerationDisabled
	}
	if s.LinkMTU == 0 {
		s.LinkMTU = MaxLinkMTU
	}
	if s.Upgrade.MaxUDPOutageMs == 0 {
		s.Upgrade.MaxUDPOutageMs = DefaultMaxUDPOutageMs
	}
	b := &s.BGP
	if b.ClusterASN == 0 {
		b.ClusterASN = DefaultClusterASN
	}
	if b.KeepaliveSeconds == 0 {
		b.KeepaliveSeconds = DefaultKeepaliveSeconds
	}
	if b.HoldSeconds == 0 {
		b.HoldSeconds = 3 * b.KeepaliveSeconds
	}
	if b.BFD.ReceiveIntervalMs == 0 {
		b.BFD.ReceiveIntervalMs = DefaultBFDIntervalMs
	}
	if b.BFD.TransmitIntervalMs == 0 {
		b.BFD.TransmitIntervalMs = DefaultBFDIntervalMs
	}
	if b.BFD.DetectMultiplier == 0 {
		b.BFD.DetectMultiplier = DefaultBFDMultiplier
	}
	v := &s.Versions
	setIf(&v.Cilium, DefaultCiliumVersion)
	setIf(&v.MetalLB, DefaultMetalLBVersion)
	if v.Kubernetes.Distribution == "" {
		v.Kubernetes.Distribution = DistUpstream
	}
	if v.Kubernetes.Distribution == DistK3s {
		setIf(&v.Kubernetes.Version, DefaultK3sVersion)
	} else {
		setIf(&v.Kubernetes.Version, DefaultK8sVersion)
	}
}

func setIf(p *string, v string) {
	if *p == "" {
		*p = v
	}
}
