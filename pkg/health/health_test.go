package health

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
)

func TestEndpoints(t *testing.T) {
	var notReady atomic.Pointer[error]
	e := errors.New("subnet file not written")
	notReady.Store(&e)
	s, err := Listen("127.0.0.1:0", func() error {
		if p := notReady.Load(); p != nil {
			return *p
		}
		return nil
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + s.Addr().String() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := get("/healthz"); code != 200 {
		t.Fatalf("/healthz = %d", code)
	}
	if code, body := get("/readyz"); code != 503 || !strings.Contains(body, "subnet file") {
		t.Fatalf("/readyz before ready = %d %q", code, body)
	}
	notReady.Store(nil)
	if code, _ := get("/readyz"); code != 200 {
		t.Fatalf("/readyz when ready = %d", code)
	}
	if code, _ := get("/metrics"); code != 404 {
		t.Fatalf("/metrics without handler = %d", code)
	}
}
