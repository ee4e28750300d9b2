package conformance

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"v6lab.dev/v6lab/labs/frr"
	"v6lab.dev/v6lab/labs/runtime"
	"v6lab.dev/v6lab/labs/spec"
	"v6lab.dev/v6lab/reports"
)

// The routers learn what the cluster announces (vtysh JSON): every leaf holds each of
// the workload's VIPs with every node attached to it as a next hop, the edge holds
// each VIP, and (native routing) the edge holds a route covering every pod's address,
// inside its application's pool. Control: the cluster's BGP advertisement removed.
func bgpRoutes() Check {
	var saved string
	return Check{
		Name:     "bgp-routes",
		Applies:  always,
		Breakage: "the BGP advertisements removed (Cilium's, and MetalLB's when it announces): the nodes withdraw pod pools and VIPs",
		Expect:   kindRouteMissing,
		Break: func(ctx context.Context, x *Lab) (func(context.Context) error, error) {
			if x.Lab.Spec.Spec.LoadBalancer.Announcer != spec.AnnouncerCiliumBGP && x.Lab.Spec.Spec.Datapath != spec.DatapathNative {
				return nil, errors.New("nothing to withdraw: the cluster announces neither VIPs nor pod pools")
			}
			var ns []string // Cilium's advertisements are cluster-scoped
			kind := "ciliumbgpadvertisements.cilium.io"
			if x.Lab.Spec.Spec.LoadBalancer.Announcer == spec.AnnouncerMetalLB {
				// MetalLB announces the VIPs: withdraw its advertisement (and Cilium's, the
				// pod pools) — every route the check looks for goes.
				kind = "ciliumbgpadvertisements.cilium.io,bgpadvertisements.metallb.io"
				ns = []string{"-n", "metallb-system"}
			}
			out, err := x.kubectl(ctx, "", append(ns, "get", kind, "-o", "json")...)
			if err != nil {
				return nil, err
			}
			saved = stripServerFields(out)
			restore := func(ctx context.Context) error {
				if _, err := x.kubectl(ctx, saved, append(ns, "apply", "-f", "-")...); err != nil {
					return err
				}
				// Back only when the routers have the routes again.
				return restored(ctx, x, "the routes", routesOnce)
			}
			_, err = x.kubectl(ctx, "", append(ns, "delete", kind, "--all")...)
			return restore, err
		},
		Run: func(ctx context.Context, x *Lab, control bool) (Result, error) {
			return settle(ctx, x, control, routesOnce)
		},
	}
}

func routesOnce(ctx context.Context, x *Lab) (Result, error) {
	r := Result{Pass: true, Reason: "ok"}
	st, err := runtime.GetStatus(ctx, x.Plan)
	if err != nil {
		return r, err
	}
	if len(st.Errors) > 0 {
		// A router that could not be read is an error, never "no route".
		return r, fmt.Errorf("reading the routers: %s", strings.Join(st.Errors, "; "))
	}
	fibs := map[string]map[string]frr.FIBRoute{}
	for _, rt := range x.Plan.Routers {
		fib, err := runtime.Router(x.Plan, rt.Name).FIB(ctx)
		if err != nil {
			return r, err
		}
		fibs[rt.Name] = map[string]frr.FIBRoute{}
		for _, f := range fib {
			fibs[rt.Name][f.Prefix] = f
		}
	}
	// What BGP chose is installed, over every path it chose (the ECMP width in
	// zebra's table is BGP's multipath width), and nothing the design keeps out of the
	// fabric was learned.
	for _, route := range st.Routes {
		if why := forbiddenRoute(x.Plan, route.Prefix); why != "" {
			r.fail(kindRouteForbidden, "%s learned %s by BGP: %s", route.Router, route.Prefix, why)
		}
		f, ok := fibs[route.Router][route.Prefix]
		switch {
		case !ok || !f.Installed || f.Protocol != "bgp":
			if !ok || f.Protocol == "bgp" { // a connected route wins over BGP by design
				r.fail(kindRouteNotInstalled, "%s: %s is in BGP but not installed (%+v)", route.Router, route.Prefix, f)
			}
		case len(f.NextHops) != route.Multi:
			r.fail(kindRouteNotInstalled, "%s: %s over %d paths in BGP, %d next hops installed (%v)", route.Router, route.Prefix, route.Multi, len(f.NextHops), f.NextHops)
		}
	}
	routes := map[string][]frr.Route{}
	for _, rt := range st.Routes {
		routes[rt.Router] = append(routes[rt.Router], rt)
	}
	find := func(router string, a netip.Addr) (frr.Route, bool) {
		best, bits := frr.Route{}, -1
		for _, rt := range routes[router] {
			p, err := netip.ParsePrefix(rt.Prefix)
			if err == nil && p.Contains(a) && p.Bits() > bits {
				best, bits = rt, p.Bits()
			}
		}
		return best, bits >= 0
	}
	// VIPs: a /128 per VIP on every router, through every node of its ToR (none on a
	// layer 2 segment: its router reaches the VIPs by neighbor discovery).
	var vips []netip.Addr
	if x.Plan.Segment == nil {
		first := x.Plan.Apps[0].Namespace
		for _, app := range x.Plan.Apps {
			if v, err := x.VIP(ctx, app.Namespace, EchoName); err == nil {
				vips = append(vips, v)
			}
		}
		if v, err := x.VIP(ctx, first, DSRSvc); err == nil {
			vips = append(vips, v)
		}
		if len(vips) == 0 {
			return r, errors.New("the workload has no VIP")
		}
	}
	edge := ""
	for _, rt := range x.Plan.Routers {
		if rt.Role == spec.RoleEdge {
			edge = rt.Name
		}
	}
	checked := 0
	for _, vip := range vips {
		for _, rt := range x.Plan.Routers {
			route, ok := find(rt.Name, vip)
			if !ok || route.Prefix != netip.PrefixFrom(vip, 128).String() {
				r.fail(kindRouteMissing, "%s has no route for VIP %s", rt.Name, vip)
				continue
			}
			checked++
			for _, n := range x.Plan.KubeNodes {
				if n.Router != rt.Name {
					continue
				}
				hop := x.announcer(n.Name)
				if !hasHop(route.NextHops, hop) {
					r.fail(kindRouteMissingHop, "%s's route for %s does not go through %s (%s): %v", rt.Name, vip, n.Name, hop, route.NextHops)
				}
			}
			if f := fibs[rt.Name][route.Prefix]; vip == vips[0] {
				r.figure("ecmp_"+rt.Name, float64(len(f.NextHops)))
			}
			if rt.Name == edge {
				r.Evidence = append(r.Evidence, reports.Evidence{Note: fmt.Sprintf("%s: %s via %v (AS path %s), installed over %v",
					rt.Name, route.Prefix, route.NextHops, route.ASPath, fibs[rt.Name][route.Prefix].NextHops)})
			}
		}
	}
	if x.Lab.Spec.Spec.Datapath == spec.DatapathNative && edge != "" {
		for _, app := range x.Plan.Apps {
			pods, err := x.Pods(ctx, app.Namespace, EchoName)
			if err != nil {
				return r, err
			}
			for _, p := range pods {
				route, ok := find(edge, p.IP)
				pfx, _ := netip.ParsePrefix(route.Prefix)
				switch {
				case !ok:
					r.fail(kindRouteMissing, "%s has no route for pod %s (%s)", edge, p.Name, p.IP)
				case !app.PodPool.Contains(pfx.Addr()) || pfx.Bits() < app.PodPool.Bits():
					r.fail(kindRouteOutsidePool, "%s reaches pod %s through %s, not a slice of %s", edge, p.IP, route.Prefix, app.PodPool)
				default:
					checked++
				}
			}
		}
	}
	r.figure("routes_checked", float64(checked))
	r.figure("routes_learned", float64(len(st.Routes)))
	return r, nil
}
