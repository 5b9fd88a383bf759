package cluster

import (
	"errors"
	"testing"
)

// TestBuildCommitMissing: a commit the repository lacks (as in a shallow
// clone) is ErrNoCommit, with a hint to unshallow.
func TestBuildCommitMissing(t *testing.T) {
	_, err := BuildCommit(t.Context(), "0123456789abcdef0123456789abcdef01234567")
	if !errors.Is(err, ErrNoCommit) {
		t.Fatalf("BuildCommit of a missing commit: %v, want ErrNoCommit", err)
	}
	t.Log(err)
}
