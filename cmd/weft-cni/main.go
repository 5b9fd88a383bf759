// Command weft-cni is weft's CNI plugin. It takes flannel's plugin config
// unchanged and can be installed as /opt/cni/bin/flannel; see package cni.
//
// Run by a container runtime (CNI_COMMAND set, no arguments) it is the
// plugin. Run by hand or by the DaemonSet's init container it takes a
// subcommand: `install` puts itself and the conflist on the node, `version`
// prints its version.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/containernetworking/cni/pkg/skel"

	"github.com/weftnet/weft/pkg/cni"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	// The runtime never passes arguments (CNI is environment and stdin), so
	// arguments without CNI_COMMAND are a subcommand.
	if len(os.Args) > 1 && os.Getenv("CNI_COMMAND") == "" {
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	}
	skel.PluginMainFuncs(cni.Funcs(), cni.PluginInfo,
		"weft-cni "+version+": flannel-compatible CNI plugin (bridge + host-local delegate); 'weft-cni -h' for its subcommands")
}

// run executes a subcommand and returns the exit code: 0 success, 1
// failure, 2 bad command line.
func run(args []string, stdout, stderr io.Writer) int {
	switch args[0] {
	case "install":
		return install(args[1:], stdout, stderr)
	case "version", "-version", "--version":
		fmt.Fprintln(stdout, "weft-cni", version)
		return 0
	case "-h", "-help", "--help", "help":
		usage(stdout)
		return 0
	}
	fmt.Fprintf(stderr, "weft-cni: unknown command %q (run 'weft-cni -h' for the list)\n", args[0])
	return 2
}

func usage(w io.Writer) {
	fmt.Fprint(w, `usage: weft-cni <command> [flags]

A container runtime runs weft-cni without arguments, as a CNI plugin.

commands:
  install   install this executable as the CNI plugin and the conflist, atomically
  version   print the version

Run 'weft-cni install -h' for its flags.
`)
}

// install parses install's flags and installs the running executable.
func install(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("weft-cni install", flag.ContinueOnError)
	fs.SetOutput(stderr)
	in := cni.Install{}
	fs.StringVar(&in.BinDir, "cni-bin-dir", cni.DefaultBinDir, "directory of the CNI plugins (the runtime's bin_dir)")
	fs.StringVar(&in.PluginName, "plugin-name", cni.DefaultPluginName, `file name of the plugin in --cni-bin-dir: the conflist's "type"`)
	fs.StringVar(&in.ConflistSrc, "conflist-src", cni.DefaultConflistSrc, "conflist to install (the DaemonSet's ConfigMap cni-conf.json)")
	fs.StringVar(&in.ConfDir, "cni-conf-dir", cni.DefaultConfDir, "directory of the CNI configs (the runtime's conf_dir)")
	fs.StringVar(&in.ConflistName, "conflist-name", cni.DefaultConflistName, "file name of the conflist in --cni-conf-dir; the runtime uses the first by name")
	disable := fs.String("disable-conflists", cni.FlannelConflist,
		"comma-separated conflists in --cni-conf-dir to rename to NAME"+cni.DisabledSuffix+" (another network's that would win); empty for none")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `usage: weft-cni install [flags]

Copies this executable to --cni-bin-dir/--plugin-name and the conflist
--conflist-src to --cni-conf-dir/--conflist-name, each through a temporary file
renamed into place (the runtime never sees a partial file), after checking the
conflist parses. Then renames the conflicting conflists of --disable-conflists.
Prints one line per action; running it again installs the same files.

flags:
`)
		fs.PrintDefaults()
	}
	err := fs.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		return 0
	case err != nil:
		return 2
	case fs.NArg() > 0:
		fmt.Fprintf(stderr, "weft-cni install: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if *disable != "" {
		in.Disable = strings.Split(*disable, ",")
	}
	if in.PluginSrc, err = os.Executable(); err != nil {
		fmt.Fprintf(stderr, "weft-cni install: find the running executable: %v\n", err)
		return 1
	}
	if err := in.Run(stdout); err != nil {
		fmt.Fprintf(stderr, "weft-cni install: %v\n", err)
		return 1
	}
	return 0
}
