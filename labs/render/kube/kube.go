// Package kube renders the plain Kubernetes objects of a lab: one namespace per
// application, annotated with the Cilium pod pool its pods draw from.
package kube

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"v6lab.dev/v6lab/labs/plan"
	"v6lab.dev/v6lab/labs/render/cilium"
)

// Namespaces returns the application namespaces.
func Namespaces(p *plan.Plan) []any {
	var out []any
	for _, a := range p.Apps {
		out = append(out, &corev1.Namespace{
			TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"},
			ObjectMeta: metav1.ObjectMeta{
				Name:        a.Namespace,
				Labels:      map[string]string{"v6lab.dev/application": a.Name},
				Annotations: map[string]string{cilium.PoolAnnotation: a.Name},
			},
		})
	}
	return out
}
