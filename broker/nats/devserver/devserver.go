// Package devserver runs an embedded NATS server with JetStream inside the
// current process, for development, examples and tests of the taskpool
// NATS broker. Production deployments connect to a real server or cluster
// instead, with natsbroker.Connect.
package devserver

import (
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Options configure an embedded server. The zero value is a server on a
// random port of 127.0.0.1 with its JetStream store in a new temporary
// directory.
type Options struct {
	// Host is the address to listen on. The default is 127.0.0.1: a
	// development server is never reachable from other machines unless
	// asked.
	Host string
	// Port is the client port. 0 (the default) picks a free port; so does
	// -1.
	Port int
	// StoreDir is the JetStream store. Empty means a temporary directory
	// that Shutdown removes. Give the same directory (and Port) to a new
	// server to restart with the same streams.
	StoreDir string
	// ReadyTimeout bounds the wait for the server to accept connections.
	// The default is 10s.
	ReadyTimeout time.Duration
}

// Server is a running embedded server.
type Server struct {
	srv     *server.Server
	dir     string
	ownsDir bool
}

// Start starts a server and waits until it accepts connections.
func Start(o Options) (*Server, error) {
	s := &Server{dir: o.StoreDir}
	if s.dir == "" {
		dir, err := os.MkdirTemp("", "taskpool-nats-*")
		if err != nil {
			return nil, fmt.Errorf("devserver: store dir: %w", err)
		}
		s.dir, s.ownsDir = dir, true
	}
	host := o.Host
	if host == "" {
		host = "127.0.0.1"
	}
	port := o.Port
	if port == 0 {
		port = server.RANDOM_PORT
	}
	srv, err := server.NewServer(&server.Options{
		ServerName: "taskpool-dev",
		Host:       host,
		Port:       port,
		JetStream:  true,
		StoreDir:   s.dir,
		NoLog:      true,
		NoSigs:     true,
		// No HTTP monitoring, no cluster, no leafnodes: only clients.
	})
	if err != nil {
		s.cleanup()
		return nil, fmt.Errorf("devserver: %w", err)
	}
	s.srv = srv
	srv.Start()
	wait := o.ReadyTimeout
	if wait <= 0 {
		wait = 10 * time.Second
	}
	if !srv.ReadyForConnections(wait) {
		srv.Shutdown()
		srv.WaitForShutdown()
		s.cleanup()
		return nil, errors.New("devserver: server not ready in time")
	}
	return s, nil
}

// URL returns the client URL, such as nats://127.0.0.1:4222.
func (s *Server) URL() string { return s.srv.ClientURL() }

// Port returns the client port the server listens on.
func (s *Server) Port() int {
	if a, ok := s.srv.Addr().(*net.TCPAddr); ok {
		return a.Port
	}
	return 0
}

// StoreDir returns the JetStream store directory.
func (s *Server) StoreDir() string { return s.dir }

// NATS returns the underlying server, for what this package does not wrap.
func (s *Server) NATS() *server.Server { return s.srv }

// Shutdown stops the server, waits until it has stopped, and removes the
// store directory if Start created it.
func (s *Server) Shutdown() {
	s.srv.Shutdown()
	s.srv.WaitForShutdown()
	s.cleanup()
}

func (s *Server) cleanup() {
	if s.ownsDir {
		_ = os.RemoveAll(s.dir)
	}
}
