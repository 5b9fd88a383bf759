package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/weftnet/weft/pkg/subnetfile"
)

var dockerOptsCommand = command{
	name:     "docker-opts",
	synopsis: "[--subnet-file F]",
	summary:  "print DOCKER_OPT_BIP, DOCKER_OPT_IPMASQ, DOCKER_OPT_MTU and DOCKER_OPTS for this node (like flannel's mk-docker-opts.sh)",
	flags: func(fs *flag.FlagSet) runFunc {
		path := subnetFileFlag(fs)
		return func(_ context.Context, stdout io.Writer, _ []string) error {
			env, err := subnetfile.Read(*path)
			if err != nil {
				return err
			}
			_, err = fmt.Fprint(stdout, subnetfile.DockerOpts(env))
			return err
		}
	},
}
