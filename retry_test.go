package ginsse_test

import (
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

// replyDropper is a connection that, once armed, lets the next reply
// reach it and then fails as a network would: Redis ran the command, the
// client never learns.
type replyDropper struct {
	net.Conn
	armed *atomic.Bool
}

func (c *replyDropper) Read(p []byte) (int, error) {
	if c.armed.CompareAndSwap(true, false) {
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
		client := redis.NewClient(&redis.Options{Addr: m.Addr(), Dialer: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var d net.Dialer
			c, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return &replyDropper{Conn: c, armed: &armed}, nil
		}})
		s, err := ginsse.New(ginsse.Options{Client: client, History: history})
		require.NoError(t, err)
		ctx := context.Background()
		require.NoError(t, s.Publish(ctx, "", "warm", ginsse.Channel("c")))
		before := m.CommandCount()
		armed.Store(true)
		require.Error(t, s.Publish(ctx, "", "once", ginsse.Channel("c")), "the reply was lost: the caller is told")
		if history > 0 {
			entries, err := m.Stream("{c}:history")
			require.NoError(t, err)
			require.Len(t, entries, 2, "the event is in Redis once, not once per retry")
		} else {
			require.Equal(t, before+1, m.CommandCount(), "PUBLISH ran once")
		}
		require.NoError(t, s.Close())
		client.Close()
	}
}
