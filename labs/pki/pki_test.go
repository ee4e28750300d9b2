package pki

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"v6lab.dev/v6lab/labs/lab"
)

func TestEnsureClusterWritesAVerifiablePKIOnce(t *testing.T) {
	l, err := lab.Load("")
	require.NoError(t, err)
	dir := t.TempDir()
	admin, err := EnsureCluster(dir, l.Plan)
	require.NoError(t, err)
	assert.FileExists(t, admin)

	caPEM, err := os.ReadFile(filepath.Join(dir, Dir, "ca.crt"))
	require.NoError(t, err)
	pool := x509.NewCertPool()
	require.True(t, pool.AppendCertsFromPEM(caPEM))

	server := filepath.Join(dir, NodeDir, "server1")
	pair, err := tls.LoadX509KeyPair(filepath.Join(server, "apiserver.crt"), filepath.Join(server, "apiserver.key"))
	require.NoError(t, err)
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	require.NoError(t, err)
	for _, name := range []string{"2001:db8::12", l.Plan.Management.Addresses["server1"].String(), "fd00:6:96::1", "kubernetes.default.svc"} {
		_, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: strings.Trim(name, "[]")})
		assert.NoError(t, err, "the API server certificate is valid for %s", name)
	}

	// Agents get only what they need.
	agent, err := os.ReadDir(filepath.Join(dir, NodeDir, "agent1"))
	require.NoError(t, err)
	var names []string
	for _, e := range agent {
		names = append(names, e.Name())
	}
	assert.ElementsMatch(t, []string{"ca.crt", "kubelet.conf"}, names)
	kubelet, err := os.ReadFile(filepath.Join(dir, NodeDir, "agent1", "kubelet.conf"))
	require.NoError(t, err)
	assert.Contains(t, string(kubelet), "server: https://[2001:db8::12]:6443")
	assert.Contains(t, string(kubelet), "system:node:agent1")
	st, err := os.Stat(filepath.Join(dir, NodeDir, "agent1", "kubelet.conf"))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), st.Mode().Perm(), "credentials are private")

	// Idempotent: a second call keeps the CA.
	_, err = EnsureCluster(dir, l.Plan)
	require.NoError(t, err)
	again, _ := os.ReadFile(filepath.Join(dir, Dir, "ca.crt"))
	assert.Equal(t, caPEM, again)

	// The kubelet's client certificate names the node in the system:nodes group, is a
	// client certificate, and chains to the cluster's CA.
	m := regexp.MustCompile(`client-certificate-data: (\S+)`).FindSubmatch(kubelet)
	require.NotNil(t, m, "kubelet.conf embeds its client certificate")
	certPEM, err := base64.StdEncoding.DecodeString(string(m[1]))
	require.NoError(t, err)
	block, _ := pem.Decode(certPEM)
	require.NotNil(t, block)
	cert, err := x509.ParseCertificate(block.Bytes)
	require.NoError(t, err)
	assert.Equal(t, "system:node:agent1", cert.Subject.CommonName)
	assert.Contains(t, cert.Subject.Organization, "system:nodes")
	assert.Contains(t, cert.ExtKeyUsage, x509.ExtKeyUsageClientAuth)
	_, err = cert.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	assert.NoError(t, err, "signed by the cluster CA")
}
