package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/pkg/datapath/ebpf"
)

// Release is a previous release of weft that upgrade tests start from.
type Release struct {
	// Commit is the release's commit, for BuildCommit.
	Commit string
	// Stack is the stack of the cluster that upgrades from it: the widest
	// its eBPF datapath runs.
	Stack Stack
	// Changed are the pinned maps whose definition differs from this
	// version's: the new weftd replaces them, and weftctl of the one
	// version cannot read them from the other's pins.
	Changed []string
	// Why says what upgrading from it covers.
	Why string
}

// PrevReleases are the previous releases upgrade tests start from, oldest
// first.
var PrevReleases = []Release{
	{
		Commit: "b1590d9",
		Stack:  IPv4Only,
		// Every map but the ring buffer weft_ct_requests (whose records
		// changed, not its definition).
		Changed: []string{ebpf.MapPeers, ebpf.MapConfig, ebpf.MapEndpoints, ebpf.MapPods, ebpf.MapNodes,
			ebpf.MapTraffic, ebpf.MapDrops},
		Why: "the landed commit before issue 11 changed every BPF map (16-byte addresses, " +
			"per-family node config blocks, per-family counters); IPv4 only, its eBPF datapath has no IPv6",
	},
	{
		Commit:  "4df9c1e",
		Stack:   DualStack,
		Changed: []string{ebpf.MapTraffic, ebpf.MapDrops},
		Why: "the landed commit of issue 11 (dual stack), before the endpoint records: only the counters " +
			"maps differ (COUNTER_MAX and DROP_MAX per family then, 32 slots per family now)",
	},
}

// ErrNoCommit is BuildCommit's error when the repository lacks the commit,
// as a shallow clone does.
var ErrNoCommit = errors.New("commit not in the repository")

// commitBuildTimeout bounds one BuildCommit, including the wait for another
// test binary building the same commit.
const commitBuildTimeout = 10 * time.Minute

// commitBinaries are the commands BuildCommit builds, by file name.
var commitBinaries = []string{"weftd", "weft-cni", "weftctl"}

// BuildCommit builds weftd, weft-cni and weftctl of commit (anything git
// rev-parse takes) of the git repository holding the working directory and
// returns them with Commit set. The build runs in a temporary detached git
// worktree, removed afterwards, and its output is cached by full commit
// hash under the user cache directory (weft-prev/<hash>/bin), so later
// calls, also from other processes, cost nothing. A file lock serializes
// builds of one commit. The commit's committed bpf2go objects need no
// clang. It returns an error wrapping ErrNoCommit if the repository does
// not have the commit.
func BuildCommit(ctx context.Context, commit string) (Binaries, error) {
	ctx, cancel := context.WithTimeout(ctx, commitBuildTimeout)
	defer cancel()
	repo, err := git(ctx, "", "rev-parse", "--show-toplevel")
	if err != nil {
		return Binaries{}, fmt.Errorf("build %s: find the repository: %w", commit, err)
	}
	hash, err := git(ctx, repo, "rev-parse", "--verify", "--quiet", commit+"^{commit}")
	if err != nil {
		return Binaries{}, fmt.Errorf("build %s: %w: %s lacks it (a shallow clone? run git fetch --unshallow)", commit, ErrNoCommit, repo)
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		return Binaries{}, fmt.Errorf("build %s: %w", commit, err)
	}
	dir := filepath.Join(cache, "weft-prev", hash)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Binaries{}, fmt.Errorf("build %s: %w", commit, err)
	}
	unlock, err := lockFile(ctx, dir+".lock")
	if err != nil {
		return Binaries{}, fmt.Errorf("build %s: %w", commit, err)
	}
	defer unlock()
	b := commitOutput(filepath.Join(dir, "bin"), hash)
	if cached(b) {
		return b, nil
	}
	start := time.Now()
	if err := buildInWorktree(ctx, repo, hash, dir); err != nil {
		return Binaries{}, fmt.Errorf("build %s: %w", commit, err)
	}
	slog.Info("built a previous weft", "commit", hash, "dir", filepath.Dir(b.Weftd), "took", time.Since(start).Round(time.Millisecond))
	return b, nil
}

// commitOutput is what BuildCommit of hash leaves in bin.
func commitOutput(bin, hash string) Binaries {
	return Binaries{Weftd: filepath.Join(bin, "weftd"), CNI: filepath.Join(bin, "weft-cni"),
		Weftctl: filepath.Join(bin, "weftctl"), Commit: hash}
}

// cached reports whether every executable of b exists.
func cached(b Binaries) bool {
	for _, f := range []string{b.Weftd, b.CNI, b.Weftctl} {
		if _, err := os.Stat(f); err != nil {
			return false
		}
	}
	return true
}

// buildInWorktree checks out hash of repo in a temporary worktree, builds
// its commands into dir/bin (through dir/bin.new, renamed when complete)
// and removes the worktree, also on failure.
func buildInWorktree(ctx context.Context, repo, hash, dir string) (err error) {
	tmp, err := os.MkdirTemp("", "weft-prev-src-")
	if err != nil {
		return err
	}
	src := filepath.Join(tmp, "src")
	defer func() {
		// A fresh context: the removal must run after a timeout too.
		if _, rerr := git(context.Background(), repo, "worktree", "remove", "--force", src); rerr != nil {
			_, perr := git(context.Background(), repo, "worktree", "prune")
			err = errors.Join(err, rerr, perr)
		}
		err = errors.Join(err, os.RemoveAll(tmp))
	}()
	if _, err := git(ctx, repo, "worktree", "add", "--detach", src, hash); err != nil {
		return err
	}
	staging := filepath.Join(dir, "bin.new")
	if err := os.RemoveAll(staging); err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-o", staging+"/", "./cmd/...")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "GOWORK=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./cmd/... in %s: %w\n%s", src, err, out)
	}
	final := filepath.Join(dir, "bin")
	if err := os.RemoveAll(final); err != nil {
		return err
	}
	return os.Rename(staging, final)
}

// git runs git with args in dir ("" for the working directory) and
// returns its trimmed output.
func git(ctx context.Context, dir string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			err = fmt.Errorf("%w: %s", err, strings.TrimSpace(string(exit.Stderr)))
		}
		return "", fmt.Errorf("git %s: %w", strings.Join(args, " "), err)
	}
	return strings.TrimSpace(string(out)), nil
}

// lockFile takes an exclusive flock on path (created if missing), polling
// until ctx ends, and returns its release.
func lockFile(ctx context.Context, path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	err = Eventually(ctx, commitBuildTimeout, "lock "+path, func() error {
		return unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
	})
	if err != nil {
		f.Close()
		return nil, err
	}
	// Closing the file releases the lock.
	return func() { f.Close() }, nil
}
