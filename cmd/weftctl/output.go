package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"strings"
	"text/tabwriter"

	"github.com/vishvananda/netlink"

	"github.com/weftnet/weft/pkg/datapath/ebpf"
	"github.com/weftnet/weft/pkg/subnetfile"
)

// Output formats of -o.
const (
	formatTable = "table"
	formatJSON  = "json"
)

// formatFlag is -o: table or json.
type formatFlag string

func (f *formatFlag) String() string { return string(*f) }

func (f *formatFlag) Set(v string) error {
	if v != formatTable && v != formatJSON {
		return fmt.Errorf("output format %q: use table or json", v)
	}
	*f = formatFlag(v)
	return nil
}

// outputFlag registers -o.
func outputFlag(fs *flag.FlagSet) *formatFlag {
	f := formatFlag(formatTable)
	fs.Var(&f, "o", "output format: table or json")
	return &f
}

// bpfDirFlag registers --bpf-dir, weftd's flag of the same name.
func bpfDirFlag(fs *flag.FlagSet) *string {
	return fs.String("bpf-dir", ebpf.DefaultBPFDir, "weftd's --bpf-dir: where the eBPF datapath pins its maps and links")
}

// subnetFileFlag registers --subnet-file, weftd's flag of the same name.
func subnetFileFlag(fs *flag.FlagSet) *string {
	return fs.String("subnet-file", subnetfile.DefaultPath, "subnet file written by weftd (flanneld's /run/flannel/subnet.env works too)")
}

// report is a command's result: marshalled for -o json, or printed as tables.
type report interface {
	writeTable(w io.Writer) error
}

// render writes r in format f.
func render(w io.Writer, f formatFlag, r report) error {
	if f == formatJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	return r.writeTable(w)
}

// writeTable prints rows under header, columns aligned.
func writeTable(w io.Writer, header []string, rows [][]string) error {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	return tw.Flush()
}

// dash shows an empty value as "-".
func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// str formats an address, prefix or MAC; "" when it is unset.
func str[T interface {
	comparable
	String() string
}](v T) string {
	var zero T
	if v == zero {
		return ""
	}
	return v.String()
}

// macStr formats a MAC; "" when it is unset.
func macStr(mac net.HardwareAddr) string {
	if len(mac) == 0 {
		return ""
	}
	return mac.String()
}

// ifname returns the name of interface idx in this network namespace, ""
// when there is none.
func ifname(idx int) string {
	if idx == 0 {
		return ""
	}
	l, err := netlink.LinkByIndex(idx)
	if err != nil {
		return ""
	}
	return l.Attrs().Name
}

// ifaceStr shows an interface index with its name here, e.g. "eth0 (2)".
func ifaceStr(idx int) string {
	if idx == 0 {
		return "-"
	}
	if name := ifname(idx); name != "" {
		return fmt.Sprintf("%s (%d)", name, idx)
	}
	return fmt.Sprintf("%d (not in this netns)", idx)
}

// writeJSONLine writes v as one line of JSON.
func writeJSONLine(w io.Writer, v any) error {
	return json.NewEncoder(w).Encode(v)
}
