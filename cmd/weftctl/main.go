// Command weftctl is weft's node-side helper. Its subcommands read the state
// weftd leaves on the node (subnet file, pinned eBPF maps and links, kernel
// devices) and the lease source, so they work while weftd is down: `status`,
// `peers`, `maps`, `counters`, `leases`, and `docker-opts` (flannel's
// mk-docker-opts.sh). Run them inside the node's network namespace
// (ip netns exec NODE weftctl ...) so interface indexes resolve to names.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
)

// command is one weftctl subcommand.
type command struct {
	name     string
	synopsis string // arguments after the name, for the usage line
	summary  string
	// jsonDoc describes the -o json output, for the usage text.
	jsonDoc string
	// positional is true when the command takes arguments after its flags.
	positional bool
	// flags registers the subcommand's flags and returns what runs it.
	flags func(fs *flag.FlagSet) runFunc
}

// runFunc runs a subcommand with its positional arguments.
type runFunc func(ctx context.Context, stdout io.Writer, args []string) error

// commands are weftctl's subcommands, in the order usage lists them.
var commands = []command{
	statusCommand, peersCommand, mapsCommand, countersCommand, leasesCommand, dockerOptsCommand,
}

func main() {
	// Warnings of the lease sources (unparsable leases, retries) go to stderr.
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run executes weftctl with args and returns the exit code: 0 success, 1
// failure, 2 bad command line.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		usage(stdout)
		return 0
	}
	for _, c := range commands {
		if c.name == args[0] {
			return c.exec(ctx, args[1:], stdout, stderr)
		}
	}
	fmt.Fprintf(stderr, "weftctl: unknown command %q (run 'weftctl -h' for the list)\n", args[0])
	return 2
}

func usage(w io.Writer) {
	fmt.Fprint(w, "usage: weftctl <command> [flags]\n\ncommands:\n")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-12s %s\n", c.name, c.summary)
	}
	fmt.Fprint(w, "\nRun 'weftctl <command> -h' for a command's flags and its JSON output.\n"+
		"Run inside the node's network namespace (e.g. ip netns exec NODE weftctl status).\n")
}

// exec parses the subcommand's flags and runs it.
func (c command) exec(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("weftctl "+c.name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: weftctl %s %s\n\n%s\n\nflags:\n", c.name, c.synopsis, c.summary)
		fs.PrintDefaults()
		if c.jsonDoc != "" {
			fmt.Fprintf(fs.Output(), "\n-o json prints:\n%s", c.jsonDoc)
		}
	}
	runCmd := c.flags(fs)
	positional, err := parseInterleaved(fs, args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		return 0
	case err != nil:
		return 2
	case len(positional) > 0 && !c.positional:
		fmt.Fprintf(stderr, "weftctl %s: unexpected argument %q\n", c.name, positional[0])
		fs.Usage()
		return 2
	}
	if err := runCmd(ctx, stdout, positional); err != nil {
		var ue usageError
		if errors.As(err, &ue) {
			fmt.Fprintf(stderr, "weftctl %s: %v\n", c.name, err)
			fs.Usage()
			return 2
		}
		fmt.Fprintf(stderr, "weftctl %s: %v\n", c.name, err)
		return 1
	}
	return 0
}

// parseInterleaved parses args with flags before, between and after the
// positional arguments (maps dump NAME -o json) and returns the latter.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return positional, nil
		}
		positional = append(positional, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// usageError is a bad command line found after flag parsing (exit code 2).
type usageError string

func (e usageError) Error() string { return string(e) }
