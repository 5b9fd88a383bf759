package subnetfile

import (
	"fmt"
	"strings"
)

// DockerOpts renders e as flannel's mk-docker-opts.sh does for a Docker
// daemon on the node: one DOCKER_OPT_* line per option and DOCKER_OPTS with
// all of them, in shell/systemd EnvironmentFile syntax. Docker must not
// masquerade when weftd already does.
func DockerOpts(e Env) string {
	type opt struct{ key, flag string }
	var opts []opt
	if e.Subnet.IsValid() { // Docker's bridge is IPv4: none for an IPv6-only node
		opts = append(opts, opt{"DOCKER_OPT_BIP", "--bip=" + firstAddr(e.Subnet).String()})
	}
	opts = append(opts, opt{"DOCKER_OPT_IPMASQ", fmt.Sprintf("--ip-masq=%t", !e.IPMasq)},
		opt{"DOCKER_OPT_MTU", fmt.Sprintf("--mtu=%d", e.MTU)})
	var b strings.Builder
	flags := make([]string, len(opts))
	for i, o := range opts {
		fmt.Fprintf(&b, "%s=%q\n", o.key, o.flag)
		flags[i] = o.flag
	}
	fmt.Fprintf(&b, "DOCKER_OPTS=%q\n", strings.Join(flags, " "))
	return b.String()
}
