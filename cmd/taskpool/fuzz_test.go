package main

import (
	"bytes"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
)

var (
	errFzNoServer = errors.New("fuzz: no server")
	errFzNoListen = errors.New("fuzz: no listening")
)

// FuzzArgs runs the command with arbitrary arguments (the fuzzer's string
// split at NUL bytes, which no argument can hold), without a server: dial
// and listen fail. Without a server a command can only print help (exit
// 0, on stdout), refuse its command line (exit 2, a message on stderr,
// nothing on stdout), or fail to connect or listen (exit 1): a command
// line that makes no sense is found before connecting, and nothing
// panics or hangs.
func FuzzArgs(f *testing.F) {
	for _, args := range [][]string{
		{},
		{"--help"},
		{"help"},
		{"-h"},
		{"queues"},
		{"queues", "--json", "--queue", "emails"},
		{"--server", "nats://127.0.0.1:1", "stats", "--timeout", "5s"},
		{"queues", "extra"},
		{"queues", "--timeout", "0s"},
		{"queues", "--timeout", "-1s"},
		{"queues", "--tls-cert", "c.pem"},
		{"queues", "--tls-key", "k.pem", "--tls-cert", "c.pem"},
		{"frobnicate"},
		{"enqueue", "email", `{"to":"a@b"}`, "--priority", "high", "--delay", "1m", "--id", "x", "--unique", "k", "--max-attempts", "3", "--task-timeout", "1s", "--create"},
		{"enqueue", "email"},
		{"enqueue", "", "{}"},
		{"enqueue", "email", "{nope"},
		{"enqueue", "email", "{}", "--priority", "urgent"},
		{"enqueue", "email", "{}", "--delay", "-1s"},
		{"enqueue", "email", "{}", "--max-attempts", "-1"},
		{"enqueue", "--", "-email", "-1"},
		{"enqueue", "--id", "--", "email", "{}"},
		{"enqueue", "--help"},
		{"dead"},
		{"dead", "--help"},
		{"dead", "bury"},
		{"dead", "list", "--after", "3", "--limit", "0"},
		{"dead", "list", "--limit", "-1"},
		{"dead", "list", "--after", "-1"},
		{"dead", "show"},
		{"dead", "show", "7"},
		{"dead", "show", "7", "8"},
		{"dead", "requeue", "1", "2", "--progress", "always"},
		{"dead", "requeue", "--all", "1"},
		{"dead", "delete"},
		{"dead", "delete", "--all", "--progress", "sometimes"},
		{"dead", "purge"},
		{"dead", "purge", "--yes"},
		{"schedules", "--delayed"},
		{"slots", "--json"},
		{"dashboard", "--listen", "127.0.0.1:0", "--read-only"},
		{"dashboard", "--listen", "nope"},
		{"dashboard", "x"},
		{"--json=maybe", "queues"},
		{"---json", "queues"},
	} {
		f.Add(strings.Join(args, "\x00"))
	}
	f.Fuzz(func(t *testing.T, argv string) {
		var args []string
		if argv != "" {
			args = strings.Split(argv, "\x00")
		}
		var stdout, stderr bytes.Buffer
		var dialed, listened bool
		e := &env{
			stdout: &stdout, stderr: &stderr,
			dial: func(string, ...nats.Option) (*nats.Conn, jetstream.JetStream, error) {
				dialed = true
				return nil, nil, errFzNoServer
			},
			listen: func(string, string) (net.Listener, error) {
				listened = true
				return nil, errFzNoListen
			},
		}
		done := make(chan int, 1)
		go func() { done <- e.run(args) }()
		hang := time.NewTimer(10 * time.Second)
		defer hang.Stop()
		var code int
		select {
		case code = <-done:
		case <-hang.C:
			t.Fatalf("%q: no exit within 10s", args)
		}
		desc := func() string {
			return strings.Join([]string{
				"args " + strings.Join(quoteAll(args), " "),
				"stdout " + stdout.String(), "stderr " + stderr.String(),
			}, "\n")
		}
		switch code {
		case exitOK:
			require.NotEmpty(t, stdout.String(), "help on stdout: %s", desc())
			require.Empty(t, stderr.String(), desc())
			require.False(t, dialed || listened, "connected or listened: %s", desc())
		case exitUsage:
			require.True(t, strings.HasPrefix(stderr.String(), "taskpool"), "a message on stderr: %s", desc())
			require.Empty(t, stdout.String(), desc())
			require.False(t, dialed || listened, "a usage error found after connecting or listening: %s", desc())
		case exitError:
			require.True(t, dialed || listened, "failed without connecting or listening: %s", desc())
			msg := errFzNoServer.Error()
			if listened {
				msg = errFzNoListen.Error()
			}
			require.Contains(t, stderr.String(), msg, desc())
		default:
			t.Fatalf("exit code %d: %s", code, desc())
		}
	})
}

func quoteAll(args []string) []string {
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = "'" + a + "'"
	}
	return q
}
