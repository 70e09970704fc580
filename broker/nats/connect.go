package natsbroker

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Connect dials url (a comma-separated list of servers for a cluster) with
// settings fit for task workers and producers: reconnect forever, every
// 250ms, and a connection name that identifies the process to the
// server's monitoring ("taskpool <program>[<pid>]@<host>"). opts are
// applied after these and may override them (nats.Name, and the security
// options: nats.Secure or nats.RootCAs and nats.ClientCert for TLS,
// nats.UserCredentials for a creds file, nats.Nkey or
// nats.NkeyOptionFromSeed, nats.Token, nats.UserInfo). Close the returned connection (or Drain it)
// after stopping every Consumer that uses it.
//
// While the connection is down, Enqueue retries until it is back or its
// ctx ends, then returns an [*EnqueueError] wrapping [ErrNotConfirmed]
// (the publish is never confirmed, so nothing is lost silently), and
// consumers retry their fetches until it is back.
func Connect(url string, opts ...nats.Option) (*nats.Conn, jetstream.JetStream, error) {
	base := []nats.Option{
		nats.Name(ConnectionName()),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
	}
	nc, err := nats.Connect(url, append(base, opts...)...)
	if err != nil {
		return nil, nil, fmt.Errorf("natsbroker: connect %s: %w", url, err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("natsbroker: jetstream: %w", err)
	}
	return nc, js, nil
}

// ConnectionName is the name Connect gives connections: "taskpool", the
// program's name, its process ID and the host, for the server's
// monitoring (connz) and logs.
func ConnectionName() string {
	host, err := os.Hostname()
	if err != nil {
		host = "unknown"
	}
	return fmt.Sprintf("taskpool %s[%d]@%s", filepath.Base(os.Args[0]), os.Getpid(), host)
}
