package ciliumbuild

// Substitute stands in for a module a Cilium release needs that the Go module proxy does
// not serve. A substitute is applied only to a release that needs it: the build module
// is resolved first as the release's own go.mod has it, and only a module the proxy
// refuses is looked up here (Build reports each substitute it applied, and the build
// keeps them in its release.json).
//
// Exactly one of Version, Upstream and Stub says what stands in.
type Substitute struct {
	// Module is the module path a release requires (for a fork, the path the release's
	// replace directive rewrites: github.com/osrg/gobgp/v3, not Cilium's fork of it).
	Module string
	// Version: the same module at this version, one the proxy serves.
	Version string
	// Upstream: the module itself at the version the release requires, instead of the
	// fork the release's go.mod replaces it with (the replace directive is dropped).
	Upstream bool
	// Stub is the Go source of a stand-in for the module's root package, for a module
	// a release imports for a name or two and that nothing in the lab exercises.
	Stub string
	// Why the substitute is safe for what v6lab runs: what the original adds that the
	// substitute lacks, and why no lab needs it.
	Why string
}

// Substitutes is the one table of stand-ins for modules the Go proxy does not serve.
// Each entry was needed by a release v6lab built (noted in Why); a new release that
// needs another module the proxy refuses fails with that module's name and this
// table's path, and the entry added here serves every later release.
var Substitutes = []Substitute{
	{
		Module: "sigs.k8s.io/mcs-api/controllers",
		Stub: `// Package controllers stands in for sigs.k8s.io/mcs-api/controllers (not served by
// the Go proxy). Cilium's operator reads only this annotation name from it.
package controllers

// DerivedServiceAnnotation names the Service derived from a ServiceImport.
const DerivedServiceAnnotation = "multicluster.kubernetes.io/derived-service"
`,
		Why: "Cilium 1.20.2's operator imports it (v0.5.2) for one annotation name of the " +
			"Multi-Cluster Services API; no lab turns MCS-API support on.",
	},
	{
		Module:  "github.com/osrg/gobgp/v4",
		Version: "v4.8.0",
		Why: "Cilium 1.20.2 requires a gobgp/v4 pseudo-version between releases; v4.8.0 is " +
			"the release next to it, and the agent's BGP control plane built on it peers " +
			"with every lab's FRR (the bgp-routes and failover checks).",
	},
	{
		Module:   "k8s.io/apimachinery",
		Upstream: true,
		Why: "Cilium 1.18.4's go.mod replaces it with Cilium's fork (v0.33.3-1), which adds `omitzero` " +
			"support to the unstructured converter, which Cilium 1.18 uses only in its " +
			"network policy types: a zero-valued field of a policy converted from " +
			"unstructured may be kept where the fork omits it.",
	},
}

// substituteFor returns the table's entry for a module path.
func substituteFor(module string) (Substitute, bool) {
	for _, s := range Substitutes {
		if s.Module == module {
			return s, true
		}
	}
	return Substitute{}, false
}

// What says what stands in, for people.
func (s Substitute) What() string {
	switch {
	case s.Version != "":
		return s.Module + " " + s.Version
	case s.Upstream:
		return s.Module + " upstream (not the release's fork)"
	default:
		return "a stub of " + s.Module + " (shipped with v6lab)"
	}
}
