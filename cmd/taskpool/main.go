// Command taskpool inspects and operates the taskpool queues of a NATS
// JetStream server: queue depths, dead letters, periodic schedules,
// enqueueing, global limit slots, server-side counters and a web dashboard. Run it with --help for the commands.
//
// Exit codes: 0 success, 1 error, 2 usage error, 3 not found (a queue or a
// dead letter).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/taskpool/taskpool"
	natsbroker "github.com/taskpool/taskpool/broker/nats"
)

// Exit codes.
const (
	exitOK       = 0
	exitError    = 1
	exitUsage    = 2
	exitNotFound = 3
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// globals are the flags every command takes, before or after its name.
type globals struct {
	server  string
	creds   string
	tlsCA   string
	tlsCert string
	tlsKey  string
	queue   string
	json    bool
	timeout time.Duration
}

func (g *globals) register(fs *flag.FlagSet) {
	fs.StringVar(&g.server, "server", g.server, "NATS server `URL`s, comma-separated; $NATS_URL when set")
	fs.StringVar(&g.creds, "creds", g.creds, "NATS user credentials `file`")
	fs.StringVar(&g.tlsCA, "tls-ca", g.tlsCA, "CA certificates `file` to verify the server")
	fs.StringVar(&g.tlsCert, "tls-cert", g.tlsCert, "client certificate `file` (with --tls-key)")
	fs.StringVar(&g.tlsKey, "tls-key", g.tlsKey, "client private key `file` (with --tls-cert)")
	fs.StringVar(&g.queue, "queue", g.queue, "queue `name` (queues, stats, schedules and slots: default every queue; the others: default \"default\")")
	fs.BoolVar(&g.json, "json", g.json, "print JSON instead of tables")
	fs.DurationVar(&g.timeout, "timeout", g.timeout, "time limit of the whole command")
}

// env is one run of the command: its flags and output.
type env struct {
	globals
	stdout, stderr io.Writer
	// serveUntil, when not nil, ends the dashboard command instead of
	// SIGINT and SIGTERM; listening, when not nil, is called with its URL
	// once it listens. Tests set them.
	serveUntil context.Context
	listening  func(url string)
	// dial and listen, when not nil, replace natsbroker.Connect and
	// net.Listen: the fuzz test runs the command without a server and
	// without binding the addresses it is given.
	dial   func(url string, opts ...nats.Option) (*nats.Conn, jetstream.JetStream, error)
	listen func(network, addr string) (net.Listener, error)
}

// usageError is a command line that makes no sense: exit code 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, a ...any) error { return &usageError{fmt.Sprintf(format, a...)} }

// errNotFound marks an error whose exit code is 3.
var errNotFound = errors.New("not found")

type command struct {
	name, args, summary string
	run                 func(e *env, args []string) error
}

var commands []command

func init() {
	commands = []command{
		{"queues", "", "depths per priority, in flight and redelivered tasks, scheduled tasks and dead letters", cmdQueues},
		{"stats", "", "server-side counters of each queue and of the JetStream account", cmdStats},
		{"enqueue", "TYPE JSON", "enqueue a task with JSON params", cmdEnqueue},
		{"dead", "SUBCOMMAND", "list and operate dead letters (below)", cmdDead},
		{"schedules", "[--delayed]", "periodic schedules with their next run (and delayed tasks)", cmdSchedules},
		{"slots", "", "global concurrency slots held, by type: which task, which process", cmdSlots},
		{"dashboard", "[--listen ADDR]", "serve the web dashboard of --queue (default 127.0.0.1:8080)", cmdDashboard},
	}
}

const usageHead = `taskpool inspects and operates taskpool queues on a NATS JetStream server.

Usage:
  taskpool [flags] COMMAND [flags] [arguments]

Commands:
`

const usageTail = "\n" + deadUsage + `
Flags (before or after the command):
`

const deadUsage = `Dead letters:
  dead list [--after SEQ] [--limit N]   dead letters, oldest first
  dead show ID                          one dead letter: error, headers, payload
  dead requeue ID... | --all            put dead letters back on the queue
  dead delete ID... | --all             delete dead letters
  dead purge --yes                      delete every dead letter of the queue

  ID is a dead letter's sequence number, or its task ID. requeue and
  delete draw their progress on stderr when it is a terminal
  (--progress always|never|auto).
`

const usageExit = `
Exit codes: 0 ok, 1 error, 2 usage error, 3 not found (queue, dead letter).
Run "taskpool COMMAND --help" for a command's own flags.
`

func usage(w io.Writer, g *globals) {
	fmt.Fprint(w, usageHead)
	for _, c := range commands {
		name := c.name
		if c.args != "" {
			name += " " + c.args
		}
		fmt.Fprintf(w, "  %-26s %s\n", name, c.summary)
	}
	fmt.Fprint(w, usageTail)
	fs := flag.NewFlagSet("taskpool", flag.ContinueOnError)
	g.register(fs)
	fs.SetOutput(w)
	fs.PrintDefaults()
	fmt.Fprint(w, usageExit)
}

// run is the whole command, with its arguments and output streams, and
// returns its exit code.
func run(args []string, stdout, stderr io.Writer) int {
	return (&env{stdout: stdout, stderr: stderr}).run(args)
}

// run is the whole command with e's output streams and hooks.
func (e *env) run(args []string) int {
	stdout, stderr := e.stdout, e.stderr
	e.server = os.Getenv("NATS_URL")
	if e.server == "" {
		e.server = "nats://127.0.0.1:4222"
	}
	e.timeout = 30 * time.Second

	top := flag.NewFlagSet("taskpool", flag.ContinueOnError)
	top.SetOutput(io.Discard)
	e.register(top)
	if err := top.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			usage(stdout, &e.globals)
			return exitOK
		}
		fmt.Fprintf(stderr, "taskpool: %v\n", err)
		usage(stderr, &e.globals)
		return exitUsage
	}
	rest := top.Args()
	if len(rest) == 0 {
		usage(stderr, &e.globals)
		return exitUsage
	}
	name := rest[0]
	if name == "help" {
		usage(stdout, &e.globals)
		return exitOK
	}
	var cmd *command
	for i := range commands {
		if commands[i].name == name {
			cmd = &commands[i]
		}
	}
	if cmd == nil {
		fmt.Fprintf(stderr, "taskpool: unknown command %q\n", name)
		usage(stderr, &e.globals)
		return exitUsage
	}
	err := cmd.run(e, rest[1:])
	var ue *usageError
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "taskpool %s: %v\n", name, err)
		return exitUsage
	case errors.Is(err, errNotFound):
		fmt.Fprintf(stderr, "taskpool %s: %v\n", name, err)
		return exitNotFound
	case errors.Is(err, taskpool.ErrInvalidOption), errors.Is(err, taskpool.ErrInvalidTask):
		// A value given on the command line that the broker refuses
		// once connected (a queue name, a task ID or type): bad input,
		// as any other usage error, not a failed operation.
		fmt.Fprintf(stderr, "taskpool %s: %v\n", name, err)
		return exitUsage
	default:
		fmt.Fprintf(stderr, "taskpool %s: %v\n", name, err)
		return exitError
	}
}

// flags returns a command's flag set, with the global flags registered on
// it so that they may follow the command's name. Its usage goes to stdout
// on --help (the command then exits 0) and to stderr on an error.
func (e *env) flags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet("taskpool "+name, flag.ContinueOnError)
	e.register(fs)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs
}

// parse parses a command's flags, which may come before, between and after
// its positional arguments ("--" ends the flags), and returns the
// positional arguments.
func (e *env) parse(fs *flag.FlagSet, usageLine string, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				e.commandUsage(e.stdout, fs, usageLine)
				return nil, err
			}
			return nil, usagef("%v (see --help)", err)
		}
		if e.timeout <= 0 {
			return nil, usagef("--timeout must be positive")
		}
		if e.queue != "" {
			if err := natsbroker.ValidateQueueName(e.queue); err != nil {
				return nil, usagef("--queue: %v", err)
			}
		}
		rest := fs.Args()
		consumed := len(args) - len(rest)
		if endsFlags(fs, args[:consumed]) {
			return append(pos, rest...), nil
		}
		if len(rest) == 0 {
			return pos, nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// endsFlags reports whether the flags fs.Parse consumed end with the "--"
// that ends the flags, rather than with a "--" given as a flag's value
// (--id --).
func endsFlags(fs *flag.FlagSet, consumed []string) bool {
	for i := 0; i < len(consumed); i++ {
		a := consumed[i]
		if a == "--" {
			return true
		}
		name := strings.TrimLeft(a, "-")
		if strings.Contains(name, "=") {
			continue
		}
		f := fs.Lookup(name)
		if f == nil {
			continue
		}
		if b, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
			continue
		}
		i++ // its value, which may be "--"
	}
	return false
}

func (e *env) commandUsage(w io.Writer, fs *flag.FlagSet, usageLine string) {
	fmt.Fprintf(w, "Usage:\n  %s [flags]\n\nFlags:\n", usageLine)
	fs.SetOutput(w)
	fs.PrintDefaults()
	fs.SetOutput(io.Discard)
}

// context returns the command's context, which ends after --timeout: call
// it once the command's flags are parsed.
func (e *env) context() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), e.timeout)
}

// noArgs is for commands that take no positional argument.
func noArgs(pos []string) error {
	if len(pos) > 0 {
		return usagef("unexpected argument %q", strings.Join(pos, " "))
	}
	return nil
}
