package backoff

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestBackoff(t *testing.T) {
	s := time.Second
	cases := []struct {
		b    Backoff
		want []time.Duration
	}{
		{Backoff{}, []time.Duration{s, 2 * s, 4 * s, 8 * s, 16 * s, 30 * s, 30 * s}},
		{Backoff{Min: 100 * time.Millisecond, Max: 500 * time.Millisecond},
			[]time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, 500 * time.Millisecond, 500 * time.Millisecond}},
		{Backoff{Min: 3 * s, Max: 3 * s}, []time.Duration{3 * s, 3 * s}},
	}
	for _, c := range cases {
		for i, want := range c.want {
			if got := c.b.Next(); got != want {
				t.Fatalf("%+v step %d = %s, want %s", c.b, i, got, want)
			}
		}
		c.b.Reset()
		if got := c.b.Next(); got != c.want[0] {
			t.Errorf("after Reset: %s, want %s", got, c.want[0])
		}
	}
}

func TestThrottle(t *testing.T) {
	now := time.Now()
	steps := []struct {
		msg  string
		at   time.Duration
		want bool
	}{{"a", 0, true}, {"a", time.Second, false}, {"a", 59 * time.Second, false}, {"b", 60 * time.Second, true}, {"a", 61 * time.Second, true}, {"a", 122 * time.Second, true}}
	var th Throttle
	for i, s := range steps {
		if got := th.Allow(s.msg, now.Add(s.at)); got != s.want {
			t.Fatalf("step %d (%q at %s): Allow=%v, want %v", i, s.msg, s.at, got, s.want)
		}
	}
	short := Throttle{Every: time.Second}
	if !short.Allow("a", now) || short.Allow("a", now.Add(999*time.Millisecond)) || !short.Allow("a", now.Add(time.Second)) {
		t.Error("Every is not honoured")
	}
}

func TestWait(t *testing.T) {
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	if Wait(ended, time.Hour, nil) {
		t.Error("Wait on an ended context reported it live")
	}
	wake := make(chan struct{}, 1)
	wake <- struct{}{}
	if !Wait(context.Background(), time.Hour, wake) {
		t.Error("Wait woken up reported the context ended")
	}
	if !Wait(context.Background(), time.Millisecond, nil) {
		t.Error("Wait after its delay reported the context ended")
	}
}

// fast is a backoff short enough for tests to run through many attempts.
var fast = Backoff{Min: time.Microsecond, Max: time.Microsecond}

// TestRetry: Retry runs f until it succeeds and reports each distinct failure
// once; a repeated failure is reported once a minute at most.
func TestRetry(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	errs := []string{"a", "a", "a", "b", "b", "a"}
	var reported []string
	calls := 0
	err := Retry(ctx, Options{Backoff: fast, Report: func(err error, wait time.Duration) {
		if wait != time.Microsecond {
			t.Errorf("reported wait %s, want the backoff's", wait)
		}
		reported = append(reported, err.Error())
	}}, func() error {
		calls++
		if calls > len(errs) {
			return nil
		}
		return errors.New(errs[calls-1])
	})
	if err != nil {
		t.Fatal(err)
	}
	if calls != len(errs)+1 {
		t.Errorf("%d calls, want %d", calls, len(errs)+1)
	}
	if got := strings.Join(reported, ","); got != "a,b,a" {
		t.Errorf("reported %s, want a,b,a", got)
	}
}

// TestRetryEnds: Retry returns when ctx ends, with ctx's error and the last
// failure.
func TestRetryEnds(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	calls := 0
	err := Retry(ctx, Options{Backoff: fast, Report: func(error, time.Duration) {}}, func() error {
		calls++
		if calls == 3 {
			cancel()
		}
		return fmt.Errorf("attempt %d", calls)
	})
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "attempt 3") {
		t.Fatalf("Do = %v, want context.Canceled naming attempt 3", err)
	}
	if calls != 3 {
		t.Errorf("%d calls after the context ended at the third, want 3", calls)
	}
}

// TestRetryWake: a receive on Wake starts the next attempt at once, however
// long the backoff.
func TestRetryWake(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	wake := make(chan struct{}, 1)
	calls := 0
	err := Retry(ctx, Options{Backoff: Backoff{Min: time.Hour, Max: time.Hour}, Wake: wake, Report: func(error, time.Duration) {}}, func() error {
		calls++
		if calls == 1 {
			wake <- struct{}{}
			return errors.New("not yet")
		}
		return nil
	})
	if err != nil || calls != 2 {
		t.Fatalf("Do = %v after %d calls, want success at the second", err, calls)
	}
}

// TestRetryDefaultReport: without Report, failures are logged as "<What>
// failed, retrying" with the error.
func TestRetryDefaultReport(t *testing.T) {
	var buf strings.Builder
	prev := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&buf, nil)))
	t.Cleanup(func() { slog.SetDefault(prev) })
	calls := 0
	err := Retry(context.Background(), Options{What: "read config", Backoff: fast}, func() error {
		if calls++; calls == 1 {
			return errors.New("no such file")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if out := buf.String(); !strings.Contains(out, `msg="read config failed, retrying" err="no such file"`) {
		t.Errorf("log %q lacks the failure", out)
	}
}
