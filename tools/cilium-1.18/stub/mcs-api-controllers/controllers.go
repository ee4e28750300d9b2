// Package controllers stands in for sigs.k8s.io/mcs-api/controllers (not served by the
// Go proxy) in v6lab's offline build of Cilium 1.18. Cilium reads an annotation name from
// it, and registers its ServiceReconciler only when Multi-Cluster Services API support
// is enabled (clustermesh with MCS-API), which no v6lab lab enables: here that
// registration fails with an error saying so, instead of running a controller that
// would differ from upstream's.
package controllers

import (
	"errors"

	"github.com/go-logr/logr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// DerivedServiceAnnotation names the derived Service of a ServiceImport.
const DerivedServiceAnnotation = "multicluster.kubernetes.io/derived-service"

// ServiceReconciler has the fields Cilium sets on upstream's controller.
type ServiceReconciler struct {
	Client client.Client
	Log    logr.Logger
}

// SetupWithManager refuses: MCS-API support is not part of v6lab's offline build.
func (r *ServiceReconciler) SetupWithManager(ctrl.Manager) error {
	return errors.New("Multi-Cluster Services API support is not available in v6lab's offline Cilium build (sigs.k8s.io/mcs-api/controllers is not served)")
}
