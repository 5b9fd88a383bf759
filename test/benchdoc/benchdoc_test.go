package benchdoc

import "testing"

func TestReplaceSection(t *testing.T) {
	other := "## Control-plane scale\n\nscale table\n"
	for _, c := range []struct{ name, doc, want string }{
		{"new before other", "# weft benchmarks\n\nintro\n\n" + other,
			"# weft benchmarks\n\nintro\n\n## Data plane\n\nnew\n\n" + other},
		{"replace before other", "# weft benchmarks\n\n## Data plane\n\nold\nlines\n\n" + other,
			"# weft benchmarks\n\n## Data plane\n\nnew\n\n" + other},
		{"replace after other", "# weft benchmarks\n\n" + other + "\n## Data plane\n\nold\n",
			"# weft benchmarks\n\n" + other + "\n## Data plane\n\nnew\n"},
		{"append", "# weft benchmarks\n", "# weft benchmarks\n\n## Data plane\n\nnew\n"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := ReplaceSection(c.doc, "## Data plane\n\nnew\n"); got != c.want {
				t.Errorf("ReplaceSection:\n%s\nwant:\n%s", got, c.want)
			}
		})
	}
}
