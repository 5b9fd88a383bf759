package cni

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const testConflist = `{"name":"cbr0","cniVersion":"0.3.1","plugins":[{"type":"weft","delegate":{"hairpinMode":true}},` +
	`{"type":"portmap","capabilities":{"portMappings":true}}]}`

// installDirs is a node's CNI directories and the install sources in a
// temporary directory; the conf dir holds kube-flannel's conflist and
// another file weft must leave alone.
func installDirs(t *testing.T, conflist string) Install {
	t.Helper()
	dir := t.TempDir()
	in := Install{
		PluginSrc:    filepath.Join(dir, "src", "weft-cni"),
		BinDir:       filepath.Join(dir, "opt", "cni", "bin"), // created by Run
		PluginName:   DefaultPluginName,
		ConflistSrc:  filepath.Join(dir, "src", "cni-conf.json"),
		ConfDir:      filepath.Join(dir, "etc", "cni", "net.d"),
		ConflistName: DefaultConflistName,
		Disable:      []string{FlannelConflist},
	}
	writeFile(t, in.PluginSrc, "#!plugin v2")
	writeFile(t, in.ConflistSrc, conflist)
	writeFile(t, filepath.Join(in.ConfDir, FlannelConflist), "flannel's")
	writeFile(t, filepath.Join(in.ConfDir, "99-other.conf"), "other")
	return in
}

// dirFiles returns "name mode content" of each file in dir, in name order.
func dirFiles(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		info, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, e.Name()+" "+info.Mode().String()+" "+string(data))
	}
	return out
}

func TestInstall(t *testing.T) {
	in := installDirs(t, testConflist)
	flannel := filepath.Join(in.ConfDir, FlannelConflist)
	wantBin := []string{"weft -rwxr-xr-x #!plugin v2"}
	wantConf := []string{
		"10-flannel.conflist.disabled-by-weft -rw-r--r-- flannel's",
		"10-weft.conflist -rw-r--r-- " + testConflist,
		"99-other.conf -rw-r--r-- other",
	}
	check := func(run string, wantOut string) {
		t.Helper()
		var out bytes.Buffer
		if err := in.Run(&out); err != nil {
			t.Fatalf("%s run: %v", run, err)
		}
		if out.String() != wantOut {
			t.Errorf("%s run printed:\n%s\nwant:\n%s", run, out.String(), wantOut)
		}
		// Also: no temporary files left behind.
		if got := dirFiles(t, in.BinDir); strings.Join(got, "\n") != strings.Join(wantBin, "\n") {
			t.Errorf("%s run: bin dir holds %q, want %q", run, got, wantBin)
		}
		if got := dirFiles(t, in.ConfDir); strings.Join(got, "\n") != strings.Join(wantConf, "\n") {
			t.Errorf("%s run: conf dir holds %q, want %q", run, got, wantConf)
		}
	}
	installed := "installed plugin " + filepath.Join(in.BinDir, "weft") + "\n" +
		"installed conflist " + filepath.Join(in.ConfDir, "10-weft.conflist") + " (network \"cbr0\")\n"
	check("first", installed+"renamed 10-flannel.conflist to 10-flannel.conflist.disabled-by-weft in "+in.ConfDir+"\n")
	check("second", installed)

	// kube-flannel's DaemonSet wrote its conflist again: disabled again.
	writeFile(t, flannel, "flannel's")
	check("third", installed+"renamed 10-flannel.conflist to 10-flannel.conflist.disabled-by-weft in "+in.ConfDir+"\n")

	// An upgrade replaces the plugin and conflist; weft's own name is never
	// disabled.
	writeFile(t, in.PluginSrc, "#!plugin v3")
	in.Disable = append(in.Disable, DefaultConflistName)
	wantBin = []string{"weft -rwxr-xr-x #!plugin v3"}
	check("upgrade", installed)
}

func TestInstallRefuses(t *testing.T) {
	for _, tc := range []struct {
		name, conflist string
		edit           func(*Install)
		want           string
	}{
		{"not JSON", `{"name":`, nil, "conflist"},
		{"no name", `{"plugins":[{"type":"weft"}]}`, nil, "no name"},
		{"no plugins", `{"name":"cbr0","cniVersion":"0.3.1"}`, nil, `at least one entry in "plugins"`},
		{"plugin without type", `{"name":"cbr0","plugins":[{"delegate":{}}]}`, nil, "type"},
		{"missing conflist", "", func(in *Install) { in.ConflistSrc += ".missing" }, "no such file"},
		{"missing plugin", testConflist, func(in *Install) { in.PluginSrc += ".missing" }, "no such file"},
		{"plugin path", testConflist, func(in *Install) { in.PluginName = "../weft" }, "not a file name"},
		{"conflist extension", testConflist, func(in *Install) { in.ConflistName = "10-weft.conf" }, "must end in .conflist"},
		{"disable path", testConflist, func(in *Install) { in.Disable = []string{"."} }, "not a file name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := installDirs(t, tc.conflist)
			if tc.edit != nil {
				tc.edit(&in)
			}
			before := dirFiles(t, in.ConfDir)
			var out bytes.Buffer
			err := in.Run(&out)
			if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("error %v, want one line saying %q", err, tc.want)
			}
			if tc.name == "missing plugin" {
				return // found only when copying: the conflist is not installed either
			}
			if got := dirFiles(t, in.BinDir); got != nil || out.Len() > 0 {
				t.Errorf("bin dir %q, printed %q: want nothing installed", got, out.String())
			}
			if got := dirFiles(t, in.ConfDir); strings.Join(got, "\n") != strings.Join(before, "\n") {
				t.Errorf("conf dir %q, want unchanged %q", got, before)
			}
		})
	}
}
