// Package controllers stands in for sigs.k8s.io/mcs-api/controllers (not served by the
// Go proxy). Cilium's operator reads only this annotation name from it: the annotation
// the Multi-Cluster Services API puts on a Service derived from a ServiceImport.
package controllers

// DerivedServiceAnnotation names the derived Service of a ServiceImport.
const DerivedServiceAnnotation = "multicluster.kubernetes.io/derived-service"
