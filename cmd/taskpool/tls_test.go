package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// pki writes a CA, a server certificate for 127.0.0.1 and a client
// certificate, all signed by the CA, to dir.
type pki struct {
	ca, serverCert, serverKey, clientCert, clientKey string
}

func newPKI(t *testing.T, dir string) pki {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "taskpool test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	require.NoError(t, err)
	ca, err := x509.ParseCertificate(caDER)
	require.NoError(t, err)

	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600))
		return p
	}
	leaf := func(serial int64, name string, usage x509.ExtKeyUsage) (cert, key string) {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		require.NoError(t, err)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial),
			Subject:      pkix.Name{CommonName: name},
			NotBefore:    time.Now().Add(-time.Hour),
			NotAfter:     time.Now().Add(time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{usage},
			IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, caKey)
		require.NoError(t, err)
		kder, err := x509.MarshalECPrivateKey(k)
		require.NoError(t, err)
		return write(name+".pem", "CERTIFICATE", der), write(name+".key", "EC PRIVATE KEY", kder)
	}
	p := pki{ca: write("ca.pem", "CERTIFICATE", caDER)}
	p.serverCert, p.serverKey = leaf(2, "server", x509.ExtKeyUsageServerAuth)
	p.clientCert, p.clientKey = leaf(3, "client", x509.ExtKeyUsageClientAuth)
	return p
}

// TestTLS runs the tool against a server that requires TLS with client
// certificates: --tls-ca, --tls-cert and --tls-key reach the connection.
func TestTLS(t *testing.T) {
	dir := t.TempDir()
	p := newPKI(t, dir)
	tc, err := server.GenTLSConfig(&server.TLSConfigOpts{
		CertFile: p.serverCert, KeyFile: p.serverKey, CaFile: p.ca, Verify: true,
	})
	require.NoError(t, err)
	srv, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: server.RANDOM_PORT, JetStream: true, StoreDir: filepath.Join(dir, "js"),
		TLS: true, TLSVerify: true, TLSConfig: tc, TLSTimeout: 2,
		NoLog: true, NoSigs: true,
	})
	require.NoError(t, err)
	srv.Start()
	t.Cleanup(func() {
		srv.Shutdown()
		srv.WaitForShutdown()
	})
	require.True(t, srv.ReadyForConnections(10*time.Second))
	url := srv.ClientURL()

	r := cli(t, nil, "--server", url, "--tls-ca", p.ca, "--tls-cert", p.clientCert, "--tls-key", p.clientKey,
		"enqueue", "--create", "email", `{"to":"ada@example.com"}`)
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Contains(t, r.stdout, "enqueued email task")

	r = cli(t, nil, "queues", "--server", url, "--tls-ca", p.ca, "--tls-cert", p.clientCert, "--tls-key", p.clientKey)
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Regexp(t, `(?m)^default\s+default\s+1\s`, r.stdout)

	// Without the client certificate, or without the CA, the server or
	// the tool refuses the connection.
	r = cli(t, nil, "queues", "--server", url, "--tls-ca", p.ca)
	assert.Equal(t, exitError, r.code, r.stderr)
	r = cli(t, nil, "queues", "--server", url, "--tls-cert", p.clientCert, "--tls-key", p.clientKey)
	assert.Equal(t, exitError, r.code, r.stderr)
	assert.Contains(t, r.stderr, "certificate")
}

// TestCredsFile checks that --creds reaches the connection: a file that
// does not exist fails it.
func TestCredsFile(t *testing.T) {
	srv := startServer(t)
	r := cli(t, srv, "queues", "--creds", filepath.Join(t.TempDir(), "missing.creds"))
	assert.Equal(t, exitError, r.code)
	assert.Contains(t, r.stderr, "missing.creds")
}
