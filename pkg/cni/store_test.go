package cni

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestStore(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "flannel")
	if err := saveDelegate(dir, "c1", []byte(`{"name":"cbr0","type":"bridge"}`)); err != nil {
		t.Fatal(err)
	}
	if err := saveDelegate(dir, "c2", []byte(`{"name":"other","type":"bridge"}`)); err != nil {
		t.Fatal(err)
	}
	d, err := loadDelegate(dir, "c1")
	if err != nil || d["type"] != "bridge" {
		t.Fatalf("load: %v, %v", d, err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Errorf("data dir holds %d files, want 2 (no temp files left)", len(entries))
	}
	if ids, err := savedContainers(dir, "cbr0"); err != nil || !slices.Equal(ids, []string{"c1"}) {
		t.Errorf("saved containers of cbr0: %v, %v", ids, err)
	}
	if err := removeDelegate(dir, "c1"); err != nil {
		t.Fatal(err)
	}
	if _, err := loadDelegate(dir, "c1"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("load after remove: %v, want not-exist", err)
	}
	if err := removeDelegate(dir, "c1"); err != nil {
		t.Errorf("second remove: %v", err)
	}
	for _, id := range []string{"", "..", "a/b", "../x"} {
		if err := saveDelegate(dir, id, []byte("{}")); err == nil {
			t.Errorf("container ID %q accepted", id)
		}
	}
	if ids, err := savedContainers(filepath.Join(dir, "none"), "cbr0"); err != nil || ids != nil {
		t.Errorf("missing dir: %v, %v", ids, err)
	}
}
