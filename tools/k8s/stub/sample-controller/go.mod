// An empty stand-in: k8s.io/kubernetes requires this staging module, which the Go
// proxy does not serve; no package of it is built.
module k8s.io/sample-controller
