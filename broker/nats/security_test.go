package natsbroker_test

import (
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	natsbroker "github.com/taskpool/taskpool/broker/nats"
)

// startAuthServer runs an embedded server on 127.0.0.1 with the given
// authentication settings and JetStream.
func startAuthServer(t *testing.T, set func(*server.Options)) *server.Server {
	t.Helper()
	o := &server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, JetStream: true,
		StoreDir: t.TempDir(), NoLog: true, NoSigs: true}
	set(o)
	s, err := server.NewServer(o)
	require.NoError(t, err)
	s.Start()
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	require.True(t, s.ReadyForConnections(10*time.Second))
	return s
}

// Connect passes the security options through: a token and an nkey are
// required by these servers, and a producer works over the connection
// they allow. (TLS and creds files are tested with the CLI's flags, which
// pass nats.RootCAs, nats.ClientCert and nats.UserCredentials the same
// way: cmd/taskpool/tls_test.go.)
func TestConnectSecurityOptions(t *testing.T) {
	t.Parallel()
	t.Run("token", func(t *testing.T) {
		s := startAuthServer(t, func(o *server.Options) { o.Authorization = "s3cret" })
		_, _, err := natsbroker.Connect(s.ClientURL(), nats.MaxReconnects(0))
		require.Error(t, err, "no token")
		nc, js, err := natsbroker.Connect(s.ClientURL(), nats.Token("s3cret"))
		require.NoError(t, err)
		defer nc.Close()
		_, err = natsbroker.NewProducer(ctxT(t), js)
		require.NoError(t, err)
	})
	t.Run("nkey", func(t *testing.T) {
		kp, err := nkeys.CreateUser()
		require.NoError(t, err)
		pub, err := kp.PublicKey()
		require.NoError(t, err)
		s := startAuthServer(t, func(o *server.Options) { o.Nkeys = []*server.NkeyUser{{Nkey: pub}} })
		_, _, err = natsbroker.Connect(s.ClientURL(), nats.MaxReconnects(0))
		require.Error(t, err, "no nkey")
		nc, js, err := natsbroker.Connect(s.ClientURL(), nats.Nkey(pub, func(nonce []byte) ([]byte, error) {
			return kp.Sign(nonce)
		}))
		require.NoError(t, err)
		defer nc.Close()
		_, err = natsbroker.NewProducer(ctxT(t), js)
		require.NoError(t, err)
	})
}

// The connection's name identifies the process in the server's
// monitoring; a nats.Name given to Connect overrides it.
func TestConnectionName(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	nc, _, err := natsbroker.Connect(srv.URL())
	require.NoError(t, err)
	defer nc.Close()
	want := fmt.Sprintf("[%d]@", os.Getpid())
	assert.Contains(t, nc.Opts.Name, want)
	assert.Equal(t, natsbroker.ConnectionName(), nc.Opts.Name)
	cz, err := srv.NATS().Connz(&server.ConnzOptions{})
	require.NoError(t, err)
	var names []string
	for _, c := range cz.Conns {
		names = append(names, c.Name)
	}
	assert.Contains(t, names, natsbroker.ConnectionName(), "the server sees the name")

	nc2, _, err := natsbroker.Connect(srv.URL(), nats.Name("billing-worker-7"))
	require.NoError(t, err)
	defer nc2.Close()
	assert.Equal(t, "billing-worker-7", nc2.Opts.Name)
}
