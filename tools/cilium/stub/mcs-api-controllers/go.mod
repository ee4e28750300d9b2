// A stand-in for sigs.k8s.io/mcs-api/controllers, which the Go proxy does not serve:
// Cilium's operator uses one constant of it.
module sigs.k8s.io/mcs-api/controllers

go 1.24
