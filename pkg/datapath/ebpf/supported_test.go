package ebpf

import (
	"testing"

	"github.com/weftnet/weft/test/testns"
)

func TestSupported(t *testing.T) {
	testns.RequireRoot(t)
	if err := Supported(); err != nil {
		t.Fatalf("Supported() on this kernel: %v", err)
	}
}
