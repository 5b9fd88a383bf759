// Command weftctl is weft's node-side helper. Its subcommands read the state
// weftd leaves on the node, e.g. `weftctl docker-opts` turns the subnet file
// into Docker daemon options like flannel's mk-docker-opts.sh.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
)

// command is one weftctl subcommand.
type command struct {
	name     string
	synopsis string // arguments after the name, for the usage line
	summary  string
	// flags registers the subcommand's flags and returns what runs it.
	flags func(fs *flag.FlagSet) func(stdout io.Writer) error
}

// commands are weftctl's subcommands, in the order usage lists them.
var commands = []command{dockerOptsCommand}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run executes weftctl with args and returns the exit code: 0 success, 1
// failure, 2 bad command line.
func run(args []string, stdout, stderr io.Writer) int {
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
			return c.exec(args[1:], stdout, stderr)
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
	fmt.Fprint(w, "\nRun 'weftctl <command> -h' for a command's flags.\n")
}

// exec parses the subcommand's flags and runs it.
func (c command) exec(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("weftctl "+c.name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: weftctl %s %s\n\n%s\n\nflags:\n", c.name, c.synopsis, c.summary)
		fs.PrintDefaults()
	}
	runCmd := c.flags(fs)
	err := fs.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		return 0
	case err != nil:
		return 2
	case fs.NArg() > 0:
		fmt.Fprintf(stderr, "weftctl %s: unexpected argument %q\n", c.name, fs.Arg(0))
		fs.Usage()
		return 2
	}
	if err := runCmd(stdout); err != nil {
		fmt.Fprintf(stderr, "weftctl %s: %v\n", c.name, err)
		return 1
	}
	return 0
}
