package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/taskpool/taskpool/dashboard"
	"github.com/taskpool/taskpool/dashboard/natssource"
)

func cmdDashboard(e *env, args []string) error {
	fs := e.flags("dashboard")
	listen := fs.String("listen", "127.0.0.1:8080", "`address` to serve the dashboard on")
	readOnly := fs.Bool("read-only", false, "hide the dead-letter actions and refuse them")
	pos, err := e.parse(fs, "taskpool dashboard [--listen ADDR] [--read-only]", args)
	if err != nil {
		return err
	}
	if err := noArgs(pos); err != nil {
		return err
	}
	// The address first: a --listen that is not an address is a usage
	// error, found before connecting like the others.
	ln, err := e.listenOn(*listen)
	if err != nil {
		return err
	}
	defer ln.Close() // closed by Shutdown too once served
	// --timeout bounds the start (connect, open the queue), not the
	// serving, which lasts until SIGINT or SIGTERM.
	ctx, cancel := e.context()
	defer cancel()
	// A server outlives a blip of the NATS connection.
	c, err := e.connect(nats.MaxReconnects(-1))
	if err != nil {
		return err
	}
	defer c.close()
	q := e.queueName()
	in, err := e.inspector(ctx, c, q)
	if err != nil {
		return err
	}
	var opts []dashboard.Option
	if *readOnly {
		opts = append(opts, dashboard.WithReadOnly())
	}
	h, err := dashboard.New(natssource.New(in, q), opts...)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	url := "http://" + ln.Addr().String() + "/"
	if e.json {
		if err := writeJSON(e.stdout, map[string]string{"url": url, "queue": q}); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(e.stdout, "serving the dashboard of queue %s on %s (no authentication: keep it on a private address)\n", q, url)
	}
	if e.listening != nil {
		e.listening(url)
	}

	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	stop := e.serveUntil
	if stop == nil {
		sctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer cancel()
		stop = sctx
	}
	select {
	case err := <-served:
		return err
	case <-stop.Done():
	}
	sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer scancel()
	err = srv.Shutdown(sctx)
	if serr := <-served; !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	return err
}

// listenOn opens the --listen address. One that is not an address (no port,
// a bad port, a host that does not resolve) is a usage error (exit 2); one
// that cannot be bound (in use, not this host's, not permitted) is a
// failed operation (exit 1).
func (e *env) listenOn(addr string) (net.Listener, error) {
	listen := net.Listen
	if e.listen != nil {
		listen = e.listen
	}
	ln, err := listen("tcp", addr)
	if err == nil {
		return ln, nil
	}
	var ae *net.AddrError
	var de *net.DNSError
	if errors.As(err, &ae) || (errors.As(err, &de) && de.IsNotFound) {
		return nil, usagef("--listen: %v", err)
	}
	return nil, fmt.Errorf("--listen: %w", err)
}
