package e2e

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/test/cluster"
)

// startForwardDrop builds a cluster whose nodes have Docker's iptables
// FORWARD policy of DROP from before weftd starts.
func startForwardDrop(t *testing.T, opts cluster.Options) *cluster.Cluster {
	t.Helper()
	opts.NoStart = true
	c := start(t, opts)
	for _, n := range c.Nodes {
		if _, err := n.Exec(t.Context(), "iptables", "-P", "FORWARD", "DROP"); err != nil {
			t.Fatal(err)
		}
		if err := n.StartWeftd(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// TestForwardPolicyDrop runs pods across two nodes whose FORWARD policy is
// DROP: pings and TCP in both directions work on every datapath, as on
// flannel, because weftd's accepts are in iptables' FORWARD chain; and the
// rules are flannel's, as flannel's e2e suite reads them.
func TestForwardPolicyDrop(t *testing.T) {
	for _, tc := range datapathCases {
		t.Run(tc.datapath+"/"+tc.backend, func(t *testing.T) {
			c := startForwardDrop(t, cluster.Options{NetConf: cluster.NetConf(tc.backend, tc.datapath, false)})
			pods := addPods(t, c, 1)
			requireDatapaths(t, c, tc.datapath)
			checkMesh(t, c, pods)
			for _, n := range c.Nodes {
				if err := flannelRules(t.Context(), n); err != nil {
					t.Error(err)
				}
			}
		})
	}
}

// TestForwardRulesOff is TestForwardPolicyDrop's control: with
// --iptables-forward-rules=false the policy stops pod traffic between
// nodes, while the overlay works (a node reaches the other's bridge).
func TestForwardRulesOff(t *testing.T) {
	c := startForwardDrop(t, cluster.Options{WeftdArgs: []string{"--iptables-forward-rules=false"}})
	pods := addPods(t, c, 1)
	subnet, err := c.Nodes[1].Subnet()
	if err != nil {
		t.Fatal(err)
	}
	if err := waitReach(t.Context(), c.Nodes[0].NS, subnet.Addr().Next()); err != nil {
		t.Fatalf("overlay: %v", err)
	}
	if r, _ := pods[0].NS.Ping(t.Context(), pods[1].IP, 3, 100*time.Millisecond); r.Received > 0 {
		t.Errorf("%s reached %s through a FORWARD policy of DROP without forward rules:\n%s", describe(pods[0]), describe(pods[1]), r.Output)
	}
	for _, n := range c.Nodes {
		if out, err := n.Exec(t.Context(), "iptables-save", "-t", "filter"); err != nil || strings.Contains(out, "FLANNEL-FWD") {
			t.Errorf("%s: forward rules installed though disabled (%v):\n%s", n.Name, err, out)
		}
	}
}

// TestFirewallRepair breaks a node's rules while weftd runs with
// --iptables-resync 1: weftd puts them back and logs it.
func TestFirewallRepair(t *testing.T) {
	c := startForwardDrop(t, cluster.Options{Nodes: 1, WeftdArgs: []string{"--iptables-resync", "1"}})
	n := c.Nodes[0]
	if err := n.WaitReady(t.Context(), subnetTimeout); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"-t", "nat", "-F", "FLANNEL-POSTRTG"},
		{"-D", "FORWARD", "-m", "comment", "--comment", "flanneld forward", "-j", "FLANNEL-FWD"},
	} {
		if _, err := n.Exec(t.Context(), "iptables", args...); err != nil {
			t.Fatal(err)
		}
	}
	if err := cluster.Eventually(t.Context(), 30*time.Second, "rules repaired", func() error {
		return flannelRules(t.Context(), n)
	}); err != nil {
		t.Fatal(err)
	}
	log, err := n.Log()
	if err != nil || !strings.Contains(log, "firewall rules drifted, repaired") {
		t.Errorf("weftd log does not report the repair (%v)", err)
	}
}

// flannelRules compares node n's iptables rules with what flannel's e2e
// suite expects: POSTROUTING's rules that mention flannel and
// FLANNEL-POSTRTG, and the FORWARD chain (policy DROP) and FLANNEL-FWD.
func flannelRules(ctx context.Context, n *cluster.Node) error {
	subnet, err := n.Subnet()
	if err != nil {
		return err
	}
	const (
		masq = ` -m comment --comment "flanneld masq" -j `
		fwd  = ` -m comment --comment "flanneld forward" -j `
	)
	cidr, sub := cluster.PodNetwork, subnet.String()
	wantNat := strings.Join([]string{
		"-A POSTROUTING" + masq + "FLANNEL-POSTRTG",
		"-N FLANNEL-POSTRTG",
		"-A FLANNEL-POSTRTG -m mark --mark 0x4000/0x4000" + masq + "RETURN",
		fmt.Sprintf("-A FLANNEL-POSTRTG -s %s -d %s%sRETURN", sub, cidr, masq),
		fmt.Sprintf("-A FLANNEL-POSTRTG -s %s -d %s%sRETURN", cidr, sub, masq),
		fmt.Sprintf("-A FLANNEL-POSTRTG ! -s %s -d %s%sRETURN", cidr, sub, masq),
		fmt.Sprintf("-A FLANNEL-POSTRTG -s %s ! -d 224.0.0.0/4%sMASQUERADE --random-fully", cidr, masq),
		fmt.Sprintf("-A FLANNEL-POSTRTG ! -s %s -d %s%sMASQUERADE --random-fully", cidr, cidr, masq),
	}, "\n")
	wantFilter := strings.Join([]string{
		"-P FORWARD DROP",
		"-A FORWARD" + fwd + "FLANNEL-FWD",
		"-N FLANNEL-FWD",
		fmt.Sprintf("-A FLANNEL-FWD -s %s%sACCEPT", cidr, fwd),
		fmt.Sprintf("-A FLANNEL-FWD -d %s%sACCEPT", cidr, fwd),
	}, "\n")
	var errs []error
	iptablesS := func(table, chain string) string {
		out, err := n.Exec(ctx, "iptables", "-t", table, "-S", chain)
		errs = append(errs, err)
		return strings.TrimSpace(out)
	}
	var nat []string
	for _, l := range strings.Split(iptablesS("nat", "POSTROUTING"), "\n") {
		if strings.Contains(l, "FLANNEL") {
			nat = append(nat, l)
		}
	}
	if got := strings.Join(append(nat, iptablesS("nat", "FLANNEL-POSTRTG")), "\n"); got != wantNat {
		errs = append(errs, fmt.Errorf("%s nat rules:\n%s\nwant (flannel's):\n%s", n.Name, got, wantNat))
	}
	if got := iptablesS("filter", "FORWARD") + "\n" + iptablesS("filter", "FLANNEL-FWD"); got != wantFilter {
		errs = append(errs, fmt.Errorf("%s filter rules:\n%s\nwant (flannel's):\n%s", n.Name, got, wantFilter))
	}
	return errors.Join(errs...)
}

// TestNFTablesMode runs a cluster with net-conf.json's EnableNFTables: the
// rules are in flannel's nftables table, as flannel's e2e suite reads
// them, none in iptables, and pods reach each other.
func TestNFTablesMode(t *testing.T) {
	c := start(t, cluster.Options{NetConf: `{"Network": "` + cluster.PodNetwork +
		`", "EnableNFTables": true, "Backend": {"Type": "vxlan", "Datapath": "kernel"}}`})
	pods := addPods(t, c, 1)
	checkMesh(t, c, pods)
	for _, n := range c.Nodes {
		subnet, err := n.Subnet()
		if err != nil {
			t.Fatal(err)
		}
		cidr, sub := cluster.PodNetwork, subnet.String()
		want := map[string][]string{
			"postrtg": {
				`comment "chain to manage traffic masquerading by flannel"`,
				"type nat hook postrouting priority srcnat; policy accept;",
				"meta mark 0x00004000 return",
				fmt.Sprintf("ip saddr %s ip daddr %s return", sub, cidr),
				fmt.Sprintf("ip saddr %s ip daddr %s return", cidr, sub),
				fmt.Sprintf("ip saddr != %s ip daddr %s return", sub, cidr),
				fmt.Sprintf("ip saddr %s ip daddr != 224.0.0.0/4 masquerade fully-random", cidr),
				fmt.Sprintf("ip saddr != %s ip daddr %s masquerade fully-random", cidr, cidr),
			},
			"forward": {
				`comment "chain to accept flannel traffic"`,
				"type filter hook forward priority filter; policy accept;",
				fmt.Sprintf("ip saddr %s accept", cidr),
				fmt.Sprintf("ip daddr %s accept", cidr),
			},
		}
		for chain, body := range want {
			out, err := n.Exec(t.Context(), "nft", "list", "chain", "ip", "flannel-ipv4", chain)
			if err != nil {
				t.Fatal(err)
			}
			w := "table ip flannel-ipv4 {\n\tchain " + chain + " {\n\t\t" + strings.Join(body, "\n\t\t") + "\n\t}\n}"
			if got := strings.TrimSpace(out); got != w {
				t.Errorf("%s chain %s:\n%s\nwant (flannel's):\n%s", n.Name, chain, got, w)
			}
		}
		if out, err := n.Exec(t.Context(), "iptables-save"); err != nil || strings.Contains(out, "FLANNEL") {
			t.Errorf("%s: iptables rules in nftables mode (%v):\n%s", n.Name, err, out)
		}
	}
}
