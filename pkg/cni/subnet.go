package cni

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/weftnet/weft/pkg/subnetfile"
)

// defaultSubnetFiles are tried in order when the config has no "subnetFile".
var defaultSubnetFiles = []string{DefaultSubnetFile, FlannelSubnetFile}

// LoadSubnetEnv reads the node's subnet file: configured when set, else the
// first of /run/weft/subnet.env and /run/flannel/subnet.env that exists. It
// returns the env and the path it read.
func LoadSubnetEnv(configured string) (subnetfile.Env, string, error) {
	path, err := findSubnetFile(configured, defaultSubnetFiles)
	if err != nil {
		return subnetfile.Env{}, "", err
	}
	env, err := subnetfile.Read(path)
	if errors.Is(err, fs.ErrNotExist) {
		return subnetfile.Env{}, "", missingSubnetFile(path)
	}
	if err != nil {
		return subnetfile.Env{}, "", fmt.Errorf("bad %w: restart weftd to rewrite it", err) // err names the file
	}
	return env, path, nil
}

// findSubnetFile returns configured if set, else the first existing candidate.
func findSubnetFile(configured string, candidates []string) (string, error) {
	if configured != "" {
		return configured, nil
	}
	for _, p := range candidates {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", missingSubnetFile(strings.Join(candidates, " or "))
}

func missingSubnetFile(path string) error {
	return fmt.Errorf(`no subnet file at %s: is weftd running on this node? (it writes the file once it has a subnet lease; set "subnetFile" in the CNI config if --subnet-file points elsewhere)`, path)
}
