package sseclient_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/ginsse/ginsse/sseclient"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestHTTPVersions reads, and resumes, a stream over HTTP/1.1 and over
// HTTP/2 with TLS, with frames cut in awkward places between flushes.
func TestHTTPVersions(t *testing.T) {
	for _, tc := range []struct {
		name  string
		tls   bool
		proto int
	}{
		{"HTTP/1.1", false, 1},
		{"HTTP/2", true, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := serve(t, tc.tls, func(w http.ResponseWriter, r *http.Request, n int) {
				if n == 0 {
					// A byte order mark and a CRLF cut in two, and a frame
					// spread over flushes.
					stream(w, "\xEF\xBB", "\xBFretry: 10\r", "\nid: 1\r\ndata: a\r", "\n\r", "\nevent: up", "date\ndata: b\n", "\n")
					return // the stream ends: the client reconnects
				}
				stream(w, "data: c\n\n")
				hold(r)
			})
			c := newClient(t, srv.URL, sseclient.Options{HTTPClient: srv.Client()})
			got, err := collect(testContext(t), c, 3)
			require.NoError(t, err)
			assert.Equal(t, []sseclient.Event{
				{Type: "message", Data: "a", ID: "1", Retry: 10 * time.Millisecond},
				ev("update", "b", "1"),
				ev("message", "c", "1"),
			}, got)
			reqs := srv.seen()
			require.Len(t, reqs, 2)
			for _, r := range reqs {
				assert.Equal(t, tc.proto, r.proto, "the protocol the server saw")
			}
			assert.Equal(t, "1", reqs[1].header.Get("Last-Event-ID"))
			assert.Equal(t, 1, <-srv.gone)
		})
	}
}
