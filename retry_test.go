package ginsse_test

import (
	"bytes"
	"context"
	"io"
	"net"
	"sync/atomic"
	"testing"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/ginsse/ginsse"
)

// replyDropper is a connection that, once armed, lets the reply to the
// next command written with the marker reach it and then fails as a
// network would: Redis ran the command, the client never learns. It
// counts the writes that carry the marker, on every connection.
type replyDropper struct {
	net.Conn
	armed  *atomic.Bool
	sent   *atomic.Int64
	marker []byte
	drop   bool // the next read is the marked command's reply
}

func (c *replyDropper) Write(p []byte) (int, error) {
	if bytes.Contains(p, c.marker) {
		c.sent.Add(1)
		if c.armed.CompareAndSwap(true, false) {
			c.drop = true
		}
	}
	return c.Conn.Write(p)
}

func (c *replyDropper) Read(p []byte) (int, error) {
	if c.drop {
		c.drop = false
		_, _ = c.Conn.Read(p)
		c.Conn.Close()
		return 0, io.EOF
	}
	return c.Conn.Read(p)
}

// A Client left at go-redis's default of 3 retries would send a publish
// again after its reply was lost, and Redis would store the event twice.
func TestSendIsNeverRetriedByTheClient(t *testing.T) {
	for _, history := range []int{0, 100} {
		m := miniredis.RunT(t)
		var armed atomic.Bool
		var sent atomic.Int64
		client := redis.NewClient(&redis.Options{Addr: m.Addr(), Dialer: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var d net.Dialer
			c, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return &replyDropper{Conn: c, armed: &armed, sent: &sent, marker: []byte("once")}, nil
		}})
		s, err := ginsse.New(ginsse.Options{Client: client, History: history})
		require.NoError(t, err)
		ctx := context.Background()
		require.NoError(t, s.Publish(ctx, "", "warm", ginsse.Channel("c")))
		armed.Store(true)
		require.Error(t, s.Publish(ctx, "", "once", ginsse.Channel("c")), "the reply was lost: the caller is told")
		require.EqualValues(t, 1, sent.Load(), "the publish went out once, not once per retry")
		if history > 0 {
			entries, err := m.Stream("{c}:history")
			require.NoError(t, err)
			require.Len(t, entries, 2, "the event is in Redis once")
		}
		require.NoError(t, s.Close())
		client.Close()
	}
}
