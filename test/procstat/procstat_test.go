package procstat

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestParseStatCPU(t *testing.T) {
	// A command name with spaces and a parenthesis, utime 250, stime 37.
	stat := []byte("4242 (weft (x) d) S 1 4242 4242 0 -1 4194560 1200 0 0 0 250 37 0 0 20 0 9 0 1000 100000 2000 18446744073709551615\n")
	got, err := parseStatCPU(stat)
	if err != nil {
		t.Fatal(err)
	}
	if want := 2870 * time.Millisecond; got != want {
		t.Errorf("parseStatCPU = %v, want %v", got, want)
	}
	if _, err := parseStatCPU([]byte("4242 (x) S 1 2 3")); err == nil {
		t.Error("short stat parsed without error")
	}
	if _, err := parseStatCPU([]byte("4242 (x) S 1 4242 4242 0 -1 4194560 1200 0 0 0 2x5 37 0")); err == nil {
		t.Error("non-numeric utime parsed without error")
	}
}

func TestOwnProcess(t *testing.T) {
	if _, err := CPU(os.Getpid()); err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckComm(os.Getpid(), filepath.Base(self)); err != nil {
		t.Error(err)
	}
	if err := CheckComm(os.Getpid(), "no-such-program"); err == nil {
		t.Error("CheckComm accepted a wrong name")
	}
}

func TestCommMatches(t *testing.T) {
	for _, c := range []struct {
		comm, name string
		want       bool
	}{
		{"weft-bench", "weft-bench", true},
		{"weft-bench", "weftd", false},
		{"a-very-long-pro", "a-very-long-program-name", true},
		{"a-very-long-pro", "a-very-long-pro", true},
		{"a-very-long-pro", "a-very-long-prX-name", false},
	} {
		if got := commMatches(c.comm, c.name); got != c.want {
			t.Errorf("commMatches(%q, %q) = %v, want %v", c.comm, c.name, got, c.want)
		}
	}
}
