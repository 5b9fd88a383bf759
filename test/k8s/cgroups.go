package k8s

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/weftnet/weft/test/cluster"
)

// cgroupRemoveTimeout bounds the removal of a node's cgroups, which waits
// for its killed processes to leave them.
const cgroupRemoveTimeout = 30 * time.Second

// cgroupMounts returns the mount points of the machine's cgroup
// hierarchies: the v1 ones (cpu, memory, ..., name=systemd) and the v2
// ones (the hybrid layout's unified, without controllers).
func cgroupMounts() (v1, v2 []string, err error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// ID parent major:minor root mountpoint options... - fstype source superoptions
		fields := strings.Fields(sc.Text())
		sep := slices.Index(fields, "-")
		if sep < 5 || sep+1 >= len(fields) {
			continue
		}
		switch fields[sep+1] {
		case "cgroup":
			v1 = append(v1, fields[4])
		case "cgroup2":
			v2 = append(v2, fields[4])
		}
	}
	return v1, v2, sc.Err()
}

// createCgroups creates the node's cgroupRoot in every v1 hierarchy, as
// the kubelet requires of a cgroupRoot on cgroups v1 (cpuset's with the
// parent's CPUs and memory nodes, which a new cpuset lacks). Close removes
// them, with whatever the kubelet and runc created below them (also in the
// v2 hierarchy).
func (n *Node) createCgroups(context.Context) error {
	v1, _, err := cgroupMounts()
	if err != nil {
		return fmt.Errorf("cgroup hierarchies: %w", err)
	}
	if len(v1) == 0 {
		return errors.New("no cgroup v1 hierarchy: the harness expects this machine's hybrid cgroups")
	}
	return n.c.add(func() error {
		for _, mp := range v1 {
			dir := filepath.Join(mp, n.CgroupRoot)
			if err := os.Mkdir(dir, 0o755); err != nil {
				return fmt.Errorf("create cgroup %s: %w", dir, err)
			}
			for _, file := range []string{"cpuset.cpus", "cpuset.mems"} {
				v, err := os.ReadFile(filepath.Join(mp, file))
				if errors.Is(err, fs.ErrNotExist) {
					continue // not the cpuset hierarchy
				}
				if err != nil {
					return err
				}
				if err := os.WriteFile(filepath.Join(dir, file), v, 0o644); err != nil {
					return fmt.Errorf("cgroup %s: %w", dir, err)
				}
			}
		}
		return nil
	}, n.removeCgroups)
}

// removeCgroups removes the node's cgroupRoot and every cgroup below it in
// every hierarchy, deepest first, waiting for their processes to be gone.
func (n *Node) removeCgroups() error {
	if !strings.HasPrefix(n.CgroupRoot, "/"+n.c.Prefix) || n.c.Prefix == "" {
		return fmt.Errorf("refusing to remove cgroup %q: not the cluster's (prefix %q)", n.CgroupRoot, n.c.Prefix)
	}
	v1, v2, err := cgroupMounts()
	if err != nil {
		return fmt.Errorf("cgroup hierarchies: %w", err)
	}
	var errs []error
	for _, mp := range append(v1, v2...) {
		root := filepath.Join(mp, n.CgroupRoot)
		var dirs []string
		err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() {
				dirs = append(dirs, path)
			}
			return nil
		})
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("list cgroups under %s: %w", root, err))
			continue
		}
		slices.Reverse(dirs) // children before their parent
		for _, dir := range dirs {
			err := cluster.Eventually(context.Background(), cgroupRemoveTimeout, "remove cgroup "+dir, func() error {
				if err := os.Remove(dir); err != nil && !errors.Is(err, fs.ErrNotExist) {
					return err
				}
				return nil
			})
			if err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}
