package cni

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/weftnet/weft/pkg/atomicfile"
)

// The delegate config of each container is saved as dataDir/<containerID>,
// plain JSON like flannel's, so DEL works after the subnet file is gone and
// either plugin can delete what the other added.

func savedPath(dataDir, containerID string) (string, error) {
	if !isBaseName(containerID) {
		return "", fmt.Errorf("invalid container ID %q", containerID)
	}
	return filepath.Join(dataDir, containerID), nil
}

// saveDelegate writes the delegate config atomically.
func saveDelegate(dataDir, containerID string, conf []byte) error {
	path, err := savedPath(dataDir, containerID)
	if err != nil {
		return err
	}
	if err := atomicfile.Write(path, conf, 0o600, 0o700); err != nil {
		return fmt.Errorf("save delegate config for %s: %w", containerID, err)
	}
	return nil
}

// loadDelegate reads a saved delegate config; the error wraps fs.ErrNotExist
// when ADD never saved one (or DEL already removed it).
func loadDelegate(dataDir, containerID string) (map[string]any, error) {
	path, err := savedPath(dataDir, containerID)
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read saved delegate config: %w", err)
	}
	d := map[string]any{}
	if err := json.Unmarshal(data, &d); err != nil {
		return nil, fmt.Errorf("parse saved delegate config %s: %w", path, err)
	}
	return d, nil
}

// removeDelegate deletes a saved delegate config; a missing one is fine.
func removeDelegate(dataDir, containerID string) error {
	path, err := savedPath(dataDir, containerID)
	if err != nil {
		return err
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove saved delegate config: %w", err)
	}
	return nil
}

// savedContainers lists the container IDs with a saved config of network.
func savedContainers(dataDir, network string) ([]string, error) {
	entries, err := os.ReadDir(dataDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list CNI data dir: %w", err)
	}
	var ids []string
	for _, e := range entries {
		if !e.Type().IsRegular() || e.Name()[0] == '.' {
			continue
		}
		d, err := loadDelegate(dataDir, e.Name())
		if err != nil || d["name"] != network {
			continue // another network's, or not ours to judge
		}
		ids = append(ids, e.Name())
	}
	return ids, nil
}
