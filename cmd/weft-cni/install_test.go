package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// weftCNI runs the built weft-cni with args and the environment additions
// env, and returns its exit code, stdout and stderr.
func weftCNI(t *testing.T, env []string, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(filepath.Join(pluginDir(t), "weft"), args...)
	cmd.Env = append(os.Environ(), append([]string{"CNI_COMMAND="}, env...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if _, ok := err.(*exec.ExitError); err != nil && !ok {
		t.Fatalf("run weft-cni %v: %v", args, err)
	}
	return cmd.ProcessState.ExitCode(), stdout.String(), stderr.String()
}

// TestInstallCommand runs `weft-cni install` as the DaemonSet's init
// container does, into temporary directories.
func TestInstallCommand(t *testing.T) {
	dir := t.TempDir()
	binDir, confDir, src := filepath.Join(dir, "bin"), filepath.Join(dir, "net.d"), filepath.Join(dir, "cni-conf.json")
	conflist := `{"name":"cbr0","cniVersion":"0.3.1","plugins":[{"type":"weft"},{"type":"portmap","capabilities":{"portMappings":true}}]}`
	for path, content := range map[string]string{src: conflist, filepath.Join(confDir, "10-flannel.conflist"): "{}"} {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	args := []string{"install", "--cni-bin-dir", binDir, "--cni-conf-dir", confDir, "--conflist-src", src}

	code, stdout, stderr := weftCNI(t, nil, args...)
	if code != 0 {
		t.Fatalf("install: exit %d, %s", code, stderr)
	}
	plugin, installed := filepath.Join(binDir, "weft"), filepath.Join(confDir, "10-weft.conflist")
	want := "installed plugin " + plugin + "\ninstalled conflist " + installed + " (network \"cbr0\")\n" +
		"renamed 10-flannel.conflist to 10-flannel.conflist.disabled-by-weft in " + confDir + "\n"
	if stdout != want {
		t.Errorf("install printed:\n%s\nwant:\n%s", stdout, want)
	}
	built, err := os.ReadFile(filepath.Join(pluginDir(t), "weft"))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(plugin); err != nil || !bytes.Equal(got, built) {
		t.Errorf("installed plugin differs from the executable (%v)", err)
	}
	if got, err := os.ReadFile(installed); err != nil || string(got) != conflist {
		t.Errorf("installed conflist %q (%v), want %q", got, err, conflist)
	}
	if _, err := os.Stat(filepath.Join(confDir, "10-flannel.conflist.disabled-by-weft")); err != nil {
		t.Errorf("flannel's conflist not disabled: %v", err)
	}
	// The installed copy runs.
	if out, err := exec.Command(plugin, "version").Output(); err != nil || string(out) != "weft-cni dev\n" {
		t.Errorf("installed plugin's version: %q, %v", out, err)
	}

	if code, stdout, _ := weftCNI(t, nil, args...); code != 0 || strings.Contains(stdout, "renamed") {
		t.Errorf("second install: exit %d, printed %q; want 0 and no rename", code, stdout)
	}

	// An invalid conflist: one line, exit 1, nothing touched.
	if err := os.WriteFile(src, []byte(`{"name":"cbr0","plugins":[]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(binDir); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr = weftCNI(t, nil, args...)
	if code != 1 || stdout != "" || strings.Count(stderr, "\n") != 1 || !strings.HasPrefix(stderr, "weft-cni install: conflist "+src) {
		t.Errorf("invalid conflist: exit %d, stdout %q, stderr %q; want 1 and one error line", code, stdout, stderr)
	}
	if _, err := os.Stat(binDir); !os.IsNotExist(err) {
		t.Errorf("plugin installed with an invalid conflist (%v)", err)
	}
	if got, _ := os.ReadFile(installed); string(got) != conflist {
		t.Errorf("invalid conflist replaced the installed one: %q", got)
	}
}

func TestCommandLine(t *testing.T) {
	for _, tc := range []struct {
		args   []string
		env    []string
		code   int
		stdout string // contained in stdout
		stderr string // contained in stderr
	}{
		{[]string{"install", "-h"}, nil, 0, "", "-cni-bin-dir string"},
		{[]string{"install", "extra"}, nil, 2, "", `unexpected argument "extra"`},
		{[]string{"install", "--bogus"}, nil, 2, "", "flag provided but not defined"},
		{[]string{"--version"}, nil, 0, "weft-cni dev", ""},
		{[]string{"-h"}, nil, 0, "install   install this executable", ""},
		{[]string{"instal"}, nil, 2, "", `unknown command "instal"`},
		// A runtime's invocation is the plugin whatever the arguments.
		{[]string{"install"}, []string{"CNI_COMMAND=VERSION"}, 0, `"supportedVersions"`, ""},
	} {
		code, stdout, stderr := weftCNI(t, tc.env, tc.args...)
		if code != tc.code || !strings.Contains(stdout, tc.stdout) || !strings.Contains(stderr, tc.stderr) {
			t.Errorf("weft-cni %v (env %v): exit %d, stdout %q, stderr %q; want %d, %q, %q",
				tc.args, tc.env, code, stdout, stderr, tc.code, tc.stdout, tc.stderr)
		}
	}
}
