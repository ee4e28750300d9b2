// Package lab ties a spec to its plan: it is what every command loads first.
package lab

import (
	"errors"
	"fmt"

	"v6lab.dev/v6lab/labs/plan"
	"v6lab.dev/v6lab/labs/spec"
	"v6lab.dev/v6lab/topologies"
)

// Lab is a validated spec and its address plan.
type Lab struct {
	Spec   *spec.Lab
	Plan   *plan.Plan
	Source string // the file it came from, or "embedded:<name>"
}

// Load reads a spec file (or the embedded default lab when path is empty), validates it
// and plans it. Every problem of the spec and of its plan is returned at once, as a
// spec.ErrorList.
func Load(path string) (*Lab, error) {
	var (
		data []byte
		err  error
		src  = path
	)
	if path == "" {
		src = "embedded:" + topologies.DefaultName
		data, err = topologies.Get(topologies.DefaultName)
	} else {
		data, err = readFile(path)
	}
	if err != nil {
		return nil, err
	}
	return Parse(data, src)
}

// Parse is Load for a document already in memory.
func Parse(data []byte, source string) (*Lab, error) {
	l, errs := spec.Decode(data)
	if l == nil {
		return nil, fmt.Errorf("%s: %w", source, errs)
	}
	spec.SetDefaults(l)
	structural := spec.Validate(l)
	errs = append(errs, structural...)
	// Every problem at once: an unknown field or a wrong type does not hide the address
	// problems, so the spec is planned unless its structure is broken (planning a spec
	// whose routers or nodes are wrong would only add noise).
	var p *plan.Plan
	if len(structural) == 0 {
		var err error
		p, err = plan.New(l)
		var perrs spec.ErrorList
		switch {
		case errors.As(err, &perrs):
			errs = append(errs, perrs...)
		case err != nil:
			return nil, fmt.Errorf("%s: %w", source, err)
		}
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%s: %w", source, errs)
	}
	return &Lab{Spec: l, Plan: p, Source: source}, nil
}

// Renamed is the same lab under another name (its own containers, networks, management
// subnet and run directory): suites bring up a lab of their own next to a user's.
func (l *Lab) Renamed(name string) (*Lab, error) {
	return l.Variant("renamed "+name, func(s *spec.Lab) {
		s.Metadata.Name = name
		s.Spec.Addressing.Management = "" // the new name derives its own
	})
}

// WithCilium is the same lab with another Cilium release (the version axis of a
// conformance matrix: the same lab at two releases, compared).
func (l *Lab) WithCilium(version string) (*Lab, error) {
	return l.Variant("with Cilium "+version, func(s *spec.Lab) { s.Spec.Versions.Cilium = version })
}

// Variant is the lab with its spec changed by edit, validated and planned again; what
// says what changed in errors.
func (l *Lab) Variant(what string, edit func(*spec.Lab)) (*Lab, error) {
	s := *l.Spec
	edit(&s)
	if errs := spec.Validate(&s); len(errs) > 0 {
		return nil, fmt.Errorf("%s %s: %w", l.Source, what, errs)
	}
	p, err := plan.New(&s)
	if err != nil {
		return nil, err
	}
	return &Lab{Spec: &s, Plan: p, Source: l.Source}, nil
}
