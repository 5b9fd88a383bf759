package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseFlagsDefaults(t *testing.T) {
	o, err := parseFlags(nil, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	if o.etcdEndpoints != "http://127.0.0.1:2379" || o.etcdPrefix != "/coreos.com/network" ||
		o.subnetFile != "/run/weft/subnet.env" || o.renewMarginMinutes != 60 || o.bpfDir != "/sys/fs/bpf/weft" ||
		o.endpointDir != "/run/weft/endpoints" ||
		o.resyncInterval != 5*time.Second || !o.setNodeNetworkUnavailable || o.healthzPort != 0 ||
		o.iptablesResync != 5 || !o.iptablesForwardRules || o.ipMasqFullyRandomDisable {
		t.Fatalf("defaults: %+v", o)
	}
}

func TestParseFlagsEnv(t *testing.T) {
	env := map[string]string{
		"WEFTD_ETCD_PREFIX":                  "/weft",
		"FLANNELD_ETCD_PREFIX":               "/ignored",
		"FLANNELD_IFACE":                     "eth0, 10.0.0.1",
		"FLANNELD_IP_MASQ":                   "true",
		"WEFTD_HEALTHZ_PORT":                 "8471",
		"FLANNELD_SUBNET_FILE":               "/run/flannel/subnet.env",
		"WEFTD_RESYNC_INTERVAL":              "2s",
		"FLANNELD_KUBE_SUBNET_MGR":           "1",
		"FLANNELD_IPTABLES_RESYNC":           "30",
		"FLANNELD_IPTABLES_FORWARD_RULES":    "false",
		"WEFTD_IP_MASQ_FULLY_RANDOM_DISABLE": "true",
		"FLANNELD_PUBLIC_IPV6":               "fd00::7",
	}
	o, err := parseFlags([]string{"--subnet-file", "/x.env"}, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if o.etcdPrefix != "/weft" {
		t.Errorf("WEFTD_ must win over FLANNELD_: %q", o.etcdPrefix)
	}
	if strings.Join(o.ifaces, "|") != "eth0|10.0.0.1" {
		t.Errorf("iface list from env: %q", o.ifaces)
	}
	if !o.ipMasq || o.healthzPort != 8471 || !o.kubeSubnetMgr || o.resyncInterval != 2*time.Second ||
		o.iptablesResync != 30 || o.iptablesForwardRules || !o.ipMasqFullyRandomDisable || o.publicIPv6 != "fd00::7" {
		t.Errorf("env values not applied: %+v", o)
	}
	if o.subnetFile != "/x.env" {
		t.Errorf("a flag must win over env: %q", o.subnetFile)
	}
}

func TestParseFlagsEndpointDirAbsolute(t *testing.T) {
	o, err := parseFlags([]string{"--endpoint-dir", "rel/endpoints"}, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(wd, "rel/endpoints"); o.endpointDir != want {
		t.Errorf("--endpoint-dir rel/endpoints = %q, want %q (the CNI plugin resolves it from another directory)", o.endpointDir, want)
	}
}

func TestParseFlagsErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{args: []string{"--subnet-lease-renew-margin", "0"}, want: "1 to 1439"},
		{args: []string{"--tc-attach", "xdp"}, want: "auto, tcx or tc"},
		{args: []string{"--datapath", "dpdk"}, want: "auto, ebpf or kernel"},
		{args: []string{"extra"}, want: "only flags"},
		{args: []string{"--iptables-resync", "0"}, want: "positive number of seconds"},
		{args: []string{"--endpoint-dir", ""}, want: "--endpoint-dir is empty"},
		{env: map[string]string{"WEFTD_HEALTHZ_PORT": "x"}, want: "WEFTD_HEALTHZ_PORT"},
	} {
		_, err := parseFlags(tc.args, func(k string) string { return tc.env[k] })
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v %v: err %v, want %q", tc.args, tc.env, err, tc.want)
		}
	}
}
