// A stand-in for sigs.k8s.io/mcs-api/controllers, which the Go proxy does not serve:
// Cilium 1.18's agent and operator use one constant and one controller type of it.
module sigs.k8s.io/mcs-api/controllers

go 1.24
