package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"sort"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	natsbroker "github.com/taskpool/taskpool/broker/nats"
)

// The server-side names of a queue Q, as the broker's README gives them.
const (
	streamPrefix = "TASKPOOL_"        // tasks: TASKPOOL_Q
	deadPrefix   = "TASKPOOLDEAD_"    // dead letters: TASKPOOLDEAD_Q
	bucketPrefix = "taskpool_unique_" // unique keys: taskpool_unique_Q
)

// client is a connection to the server.
type client struct {
	nc *nats.Conn
	js jetstream.JetStream
}

// connect dials the server with the credentials and TLS flags; extra
// options come last and so override the defaults.
func (e *env) connect(extra ...nats.Option) (*client, error) {
	opts := []nats.Option{
		nats.Name("taskpool-cli"),
		// A command is short: fail rather than wait for a server that went
		// away (the command's timeout bounds the rest).
		nats.MaxReconnects(0),
	}
	if e.creds != "" {
		opts = append(opts, nats.UserCredentials(e.creds))
	}
	if e.tlsCA != "" {
		opts = append(opts, nats.RootCAs(e.tlsCA))
	}
	switch {
	case e.tlsCert != "" && e.tlsKey != "":
		opts = append(opts, nats.ClientCert(e.tlsCert, e.tlsKey))
	case e.tlsCert != "" || e.tlsKey != "":
		return nil, usagef("--tls-cert and --tls-key go together")
	}
	dial := natsbroker.Connect
	if e.dial != nil {
		dial = e.dial
	}
	nc, js, err := dial(e.server, append(opts, extra...)...)
	if err != nil {
		return nil, err
	}
	return &client{nc: nc, js: js}, nil
}

func (c *client) close() { c.nc.Close() }

// queueName is the --queue flag, or the default queue.
func (e *env) queueName() string {
	if e.queue == "" {
		return natsbroker.DefaultQueue
	}
	return e.queue
}

// overQueues is the start that the commands reporting on queues share: it
// parses args with fs (flags only; usage is the command line shown by
// --help), connects, lists the queues (--queue, or every one on the
// server) and calls report with them.
func (e *env) overQueues(fs *flag.FlagSet, usage string, args []string, report func(ctx context.Context, c *client, names []string) error) error {
	pos, err := e.parse(fs, usage, args)
	if err != nil {
		return err
	}
	ctx, cancel := e.context()
	defer cancel()
	if err := noArgs(pos); err != nil {
		return err
	}
	c, err := e.connect()
	if err != nil {
		return err
	}
	defer c.close()
	names, err := e.queueNames(ctx, c)
	if err != nil {
		return err
	}
	return report(ctx, c, names)
}

// queueNames returns the queue given with --queue, or every queue on the
// server, sorted.
func (e *env) queueNames(ctx context.Context, c *client) ([]string, error) {
	if e.queue != "" {
		return []string{e.queue}, nil
	}
	var names []string
	lister := c.js.StreamNames(ctx)
	for n := range lister.Name() {
		if q, ok := strings.CutPrefix(n, streamPrefix); ok {
			names = append(names, q)
		}
	}
	if err := lister.Err(); err != nil {
		return nil, fmt.Errorf("list streams: %w", err)
	}
	sort.Strings(names)
	return names, nil
}

// queueOptions returns the broker options that match how queue q was
// created, read from its streams and bucket, so that opening it (which
// provisions it) changes none of its settings. It returns an error
// wrapping errNotFound when the queue does not exist: the commands do not
// create queues, except enqueue --create.
func queueOptions(ctx context.Context, c *client, q string) ([]natsbroker.Option, error) {
	opts := []natsbroker.Option{natsbroker.WithQueue(q)}
	st, err := c.js.Stream(ctx, streamPrefix+q)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, fmt.Errorf("%w: queue %q (no stream %s)", errNotFound, q, streamPrefix+q)
	}
	if err != nil {
		return nil, fmt.Errorf("queue %q: %w", q, err)
	}
	cfg := st.CachedInfo().Config
	if cfg.Storage == jetstream.MemoryStorage {
		opts = append(opts, natsbroker.WithMemoryStorage())
	}
	if cfg.Replicas > 1 {
		opts = append(opts, natsbroker.WithReplicas(cfg.Replicas))
	}
	if cfg.Duplicates > 0 {
		opts = append(opts, natsbroker.WithDuplicateWindow(cfg.Duplicates))
	}
	if !cfg.AllowMsgSchedules {
		opts = append(opts, natsbroker.WithClientSideDelays())
	}
	if cfg.PersistMode == jetstream.AsyncPersistMode {
		opts = append(opts, natsbroker.WithAsyncPersist())
	}
	kv, err := c.js.KeyValue(ctx, bucketPrefix+q)
	if err == nil {
		if s, err := kv.Status(ctx); err == nil && s.TTL() > 0 {
			opts = append(opts, natsbroker.WithUniqueTTL(s.TTL()))
		}
	}
	return opts, nil
}

// inspector opens the --queue queue (default "default") for inspection.
func (e *env) inspector(ctx context.Context, c *client, q string) (*natsbroker.Inspector, error) {
	opts, err := queueOptions(ctx, c, q)
	if err != nil {
		return nil, err
	}
	return natsbroker.NewInspector(ctx, c.js, opts...)
}
